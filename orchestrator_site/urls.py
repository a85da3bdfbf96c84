from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from accounts.views import LoginView, LogoutView
from orchestrator_site.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("api/v1/", api.urls),
    # Until the web UI has its pages: the front door leads to the API docs (after login).
    path("", RedirectView.as_view(url="/api/v1/docs", permanent=False)),
]

handler404 = "orchestrator_site.views.not_found"
handler500 = "orchestrator_site.views.server_error"
