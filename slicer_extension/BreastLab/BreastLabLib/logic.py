"""The module's logic: the server connection and the annotation and review sessions in Slicer's scene."""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from BreastLabLib.client import BreastLabClient
from BreastLabLib.results import training_progress
from BreastLabLib.review_mrml import ReviewSession
from BreastLabLib.session import AnnotationSession


class BreastLabLogic(ScriptedLoadableModuleLogic):
    """Holds the server connection, the annotation session in Slicer's scene and the review on it."""

    def __init__(self):
        super().__init__()
        self.info = None
        self.session = self.review = None

    def connect(self, url: str, username: str = "", password: str = ""):
        """Log in where the server asks for it (MONAI Label's Keycloak auth), read its ``/info/`` and start a session
        on it, replacing the previous one and its nodes."""
        client = BreastLabClient(url)
        if client.auth_enabled():
            client.login(username, password)
        self.info = client.info()
        if self.session is not None:
            self.session.end()
        self.new_session(client)
        return self.info

    def new_session(self, client: BreastLabClient):
        self.session = AnnotationSession(client, slicer.mrmlScene)
        self.review = ReviewSession(self.session)

    def training_progress(self, model: str):
        return training_progress(self.session.client.training_status(), self.info.default_epochs(model))
