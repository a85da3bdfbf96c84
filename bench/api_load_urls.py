"""The appliance's URLs plus `/bench/trivial`: a Django view that reads nothing and answers a
small JSON document, through the same middleware as the API."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from orchestrator_site.urls import urlpatterns as appliance


def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/trivial", trivial), *appliance]
