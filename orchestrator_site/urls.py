from django.urls import path

from accounts.views import LoginView, LogoutView
from orchestrator_site.api import api
from orchestrator_site.views import favicon
from updates.web import views

urlpatterns = [
    path("accounts/login/", LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("api/v1/", api.urls),
    path("favicon.ico", favicon, name="favicon"),
    # The web UI (templates/): pages call the same services and selectors as the API.
    path("", views.system, name="system"),
    path("system/refresh", views.system_refresh, name="system-refresh"),
    path("system/reconcile", views.system_reconcile, name="system-reconcile"),
    path("bundles/", views.bundle_list, name="bundles"),
    path("bundles/upload", views.bundle_upload, name="bundle-upload"),
    path("bundles/<int:bundle_id>/", views.bundle_detail, name="bundle"),
    path("bundles/<int:bundle_id>/deploy", views.bundle_deploy, name="bundle-deploy"),
    path("deployments/<int:deployment_id>/", views.deployment_detail, name="deployment"),
    path("deployments/<int:deployment_id>/steps/<int:step_id>/", views.step_detail, name="step"),
    path("deployments/<int:deployment_id>/resume", views.deployment_resume, name="deployment-resume"),
    path("deployments/<int:deployment_id>/rollback", views.deployment_rollback, name="deployment-rollback"),
    path("deployments/<int:deployment_id>/cancel", views.deployment_cancel, name="deployment-cancel"),
    path("deployments/<int:deployment_id>/approve", views.deployment_decide, name="deployment-approve"),
    path("history/", views.history, name="history"),
    path("audit/", views.audit, name="audit"),
    path("account/tokens/", views.token_list, name="tokens"),
    path("account/tokens/new", views.token_create, name="token-create"),
    path("account/tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
    path("manage/", views.admin_home, name="admin-home"),
    path("manage/users", views.admin_user_create, name="admin-user-create"),
    path("manage/users/<int:user_id>/role", views.admin_user_role, name="admin-user-role"),
    path("manage/hook-secret", views.admin_hook_secret_rotate, name="admin-hook-secret"),
]

handler404 = "orchestrator_site.views.not_found"
handler500 = "orchestrator_site.views.server_error"
