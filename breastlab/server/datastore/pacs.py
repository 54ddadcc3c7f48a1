"""The DICOMweb calls BreastLab makes to a PACS: QIDO-RS search, WADO-RS retrieve, STOW-RS store."""

from __future__ import annotations

from typing import NamedTuple

import requests
from monailabel.datastore.dicom import DICOMwebClientX
from pydicom.dataset import Dataset

EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
UID_TAGS = ("0020000D", "0020000E", "00080018")  # study, series, SOP instance


class Location(NamedTuple):
    """Where an instance lives in the PACS."""

    study: str
    series: str
    sop: str


class Result(NamedTuple):
    """A SEG or SR in the PACS: the image it is about, when it was made, (SR) the labels it holds and the reader whose
    label it is (None: the final label, or the image's labels)."""

    image: str
    when: tuple
    loc: Location
    labels: dict | None = None
    reader: str | None = None


def when_made(ds: Dataset) -> tuple:
    """Sort key: content date and time, then the instance UID."""
    date, clock = (str(ds.get(k) or "").replace("-", "").replace(":", "") for k in ("ContentDate", "ContentTime"))
    return date, float(clock or 0), str(ds.get("SOPInstanceUID", ""))  # DA/TM as written or as read back


class StoreError(RuntimeError):
    """The PACS did not store an instance."""


class Pacs:
    """A DICOMweb service (e.g. Orthanc's ``/dicom-web``); errors are ``requests`` exceptions or ``StoreError``."""

    def __init__(self, url: str, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.session = session or requests.Session()  # with the PACS's credentials, if it needs any
        self.client = DICOMwebClientX(url=self.url, session=self.session)  # MONAI Label's, tolerant of Orthanc's

    def instances(self, modality: str) -> dict[str, Location]:
        """Every instance of ``modality``, by SOPInstanceUID (all pages of the QIDO-RS answer)."""
        found = self.client.search_for_instances(search_filters={"Modality": modality}, get_remaining=True)
        uids = ([(ds.get(tag) or {}).get("Value", [None])[0] for tag in UID_TAGS] for ds in found)
        return {u[2]: Location(*u) for u in uids if all(u)}

    def metadata(self, loc: Location) -> Dataset:
        """An instance's attributes without bulk data (WADO-RS metadata)."""
        return Dataset.from_json(self.client.retrieve_instance_metadata(*loc))

    def retrieve(self, loc: Location) -> Dataset:
        """The whole instance, asked for in explicit VR little endian (the PACS decodes what it can)."""
        return self.client.retrieve_instance(*loc, media_types=(("application/dicom", EXPLICIT_LITTLE_ENDIAN),))

    def get(self, path: str, query: str, accept: str) -> requests.Response:
        """A GET of ``path`` under the DICOMweb root, as it is (the web viewer's pass-through)."""
        return self.session.get(f"{self.url}/{path}" + (f"?{query}" if query else ""), headers={"Accept": accept},
                                timeout=60)

    def store(self, ds: Dataset) -> None:
        """STOW-RS one instance; ``StoreError`` when the PACS reports it failed."""
        answer = self.client.store_instances([ds])
        failed = answer.get("FailedSOPSequence")
        if failed:
            reason = failed[0].get("FailureReason", "unknown")
            raise StoreError(f"the PACS did not store {ds.SOPInstanceUID} (failure reason {reason})")
