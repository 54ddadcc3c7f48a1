"""OHIF, the web viewer the ``monailabel`` wheel ships, served by BreastLab in PACS mode, and the read-only DICOMweb
pass-through it reads the PACS with.

MONAI Label's own ``/ohif/{path}`` handler maps ``/`` in a path to ``os.pathsep`` (``:`` on Linux): every file in a
subfolder of the build (``assets/``, ``dicom-microscopy-viewer/``) is answered with ``index.html``. Here a path is
resolved inside the build folder and nowhere else; a route of the single-page app (no file extension) gets
``index.html``; ``app-config.js`` is BreastLab's (the PACS through ``/proxy/dicom``, nothing uploaded or deleted).

The pass-through reaches the configured PACS's DICOMweb root and nothing else: ``GET`` only; paths of QIDO-RS and
WADO-RS shapes (``studies``, then study, series and instance UIDs with ``series``, ``instances``, ``metadata``,
``frames``, ``rendered``, ``thumbnail``, ``bulk``); query parameters passed on as values; the PACS's credentials
added by the server, never sent to the browser; the PACS's absolute URLs in its answers rewritten to the
pass-through's; only content headers passed back. Both need MONAI Label's user role where authentication is on.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import monailabel
import requests
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.utils.app import app_instance

from breastlab.server.http import errors
from breastlab.server.http.auth import USER

router = APIRouter()
BUILD = Path(monailabel.__file__).parent / "endpoints" / "static" / "ohif"
PROXY = "/proxy/dicom/dicomweb"
UID = r"[0-9]{1,64}(?:\.[0-9]{1,64}){0,63}"
LEVEL = r"(?:/(?:metadata|rendered|thumbnail))?"
FRAMES = r"[0-9]{1,6}(?:,[0-9]{1,6}){0,63}"
INSTANCES = rf"/instances(?:/{UID}(?:{LEVEL}|/frames/{FRAMES}(?:/rendered)?|/bulk/[0-9a-fA-F]{{8}})?)?"
SERIES = rf"/series(?:/{UID}(?:{LEVEL}|{INSTANCES})?)?"
DICOMWEB_PATH = re.compile(rf"studies(?:/{UID}(?:{LEVEL}|{SERIES})?)?")
PASSED_HEADERS = ("content-type", "cache-control", "etag", "last-modified")  # the length may change: rewritten
MEDIA = {".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json",
         ".html": "text/html", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}

APP_CONFIG = """window.config = {
  routerBasename: '/ohif/',
  showStudyList: true,
  extensions: [],
  modes: [],
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'breastlab',
  useSharedArrayBuffer: 'FALSE',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'breastlab',
    configuration: {
      friendlyName: 'BreastLab PACS (read-only)',
      name: 'breastlab',
      wadoUriRoot: '%(root)s',
      qidoRoot: '%(root)s',
      wadoRoot: '%(root)s',
      qidoSupportsIncludeField: false,
      supportsReject: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      dicomUploadEnabled: false,
      omitQuotationForMultipartRequest: true,
      bulkDataURI: {enabled: true},
    },
  }],
};
""" % {"root": PROXY}


def pacs():
    """The PACS the server serves (``breastlab.server.datastore.pacs.Pacs``); 404 on a folder datastore."""
    found = getattr(app_instance().datastore(), "pacs", None)
    if found is None:
        raise errors.not_found("the web viewer reads a PACS: start BreastLab with --studies <DICOMweb URL> "
                               "(docs/pacs.md)")
    return found


@router.get("/ohif/{path:path}", include_in_schema=False)
def ohif(path: str = "", user: User = USER):
    """A file of the OHIF build, BreastLab's ``app-config.js``, or ``index.html`` for the viewer's own routes."""
    pacs()
    if path == "app-config.js":
        return Response(APP_CONFIG, media_type="text/javascript")
    file = (BUILD / path).resolve()
    if not file.is_relative_to(BUILD.resolve()):
        raise errors.not_found(f"/ohif/{path} is not part of the viewer")
    if file.is_file():
        return FileResponse(file, media_type=MEDIA.get(file.suffix, "application/octet-stream"))
    if Path(path).suffix:
        raise errors.not_found(f"/ohif/{path} is not part of the viewer")
    return FileResponse(BUILD / "index.html", media_type="text/html")


@router.api_route(PROXY + "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
                  include_in_schema=False)
def dicomweb(path: str, request: Request, user: User = USER):
    """A QIDO-RS or WADO-RS GET to the PACS (see the module docstring)."""
    if request.method != "GET":
        raise errors.not_allowed(f"{request.method}: the viewer's pass-through to the PACS is read-only (GET)")
    if not DICOMWEB_PATH.fullmatch(path):
        raise errors.bad_request(f"{path!r} is not a QIDO-RS or WADO-RS path of studies, series and instances")
    archive = pacs()
    query = urlencode([(key, value) for key, value in request.query_params.multi_items()])
    accept = request.headers.get("accept", "application/dicom+json")
    try:
        answer = archive.get(path, query, accept)
    except requests.RequestException as e:
        raise errors.bad_gateway(f"the PACS did not answer: {type(e).__name__}") from None
    content = answer.content
    if answer.headers.get("content-type", "").startswith("application/dicom+json"):
        content = content.replace(archive.url.encode() + b"/", PROXY.encode() + b"/")
    headers = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_HEADERS}
    return Response(content, status_code=answer.status_code, headers=headers)
