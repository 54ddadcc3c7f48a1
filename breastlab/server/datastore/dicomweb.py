"""A PACS (DICOMweb) as BreastLab's MONAI Label datastore: 2D single-frame MG/US instances, SEG and SR results.

The PACS holds the record; a local cache folder holds what the bundles read (display-ready PNGs made by
``breastlab.formats.dicom``) and the usual ``datastore_v2.json`` index, kept in step by ``refresh()``:

- images: every instance of the configured modalities (QIDO-RS); image id = SOPInstanceUID, with its PatientID and
  laterality as ``patient`` and ``laterality``. Instances BreastLab cannot read (no pixel data, no decoder) are
  skipped and listed in the status.
- final labels: the newest DICOM SEG in the PACS that references the image; a label save stores a SEG naming who
  decided it. Each reader's label (``review``): the newest SEG of that reader (``ContentCreatorName``), with the
  reader's class and BI-RADS in the newest SR naming the reader.
- class / BI-RADS / probabilities (and the model whose result they are), and the approval of a final label: the
  newest SR (``breastlab.formats.dicom_sr``) referencing the image.

Other label tags stay in the cache only. Images and labels are deleted in the PACS, not through BreastLab.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import requests
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from breastlab.formats.dicom import is_dicom, read_dicom_image
from breastlab.formats.dicom_seg import mask_to_seg, referenced_instance, seg_mask, seg_reader
from breastlab.formats.dicom_sr import assessment_sr, read_assessment
from breastlab.formats.png import ImageError, check_id
from breastlab.formats.provenance import ModelIdentity
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.pacs import Location, Pacs, Result, StoreError, when_made
from breastlab.server.datastore.review import READER_PREFIX, reader_tag
from breastlab.server.datastore.screening import pacs_identity
from breastlab.server.http import errors
from breastlab.server.http.inputs import IMAGE_LABELS, checked_id, checked_image_labels

logger = logging.getLogger(__name__)
FINAL = DefaultLabelTag.FINAL.value
ASSESSMENT_KEYS = (*IMAGE_LABELS, "probabilities", "model", "approved")


def from_environment(url: str) -> "DicomWebDatastore":
    """The datastore for ``url`` as configured by BREASTLAB_DICOMWEB_* and MONAI Label's DICOMweb credentials."""
    modalities = tuple(m.strip() for m in os.environ.get("BREASTLAB_DICOMWEB_MODALITIES", "MG,US").split(",") if m)
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    cache = os.environ.get("BREASTLAB_DICOMWEB_CACHE") or Path.home() / ".cache" / "breastlab" / "dicomweb" / digest
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = requests.Session()
        session.auth = (settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD)
    refresh_s = float(os.environ.get("BREASTLAB_DICOMWEB_REFRESH_S", "10"))
    return DicomWebDatastore(url, Path(cache), modalities, refresh_s, session)


class DicomWebDatastore(BreastLabDatastore):
    """MG/US instances of a DICOMweb PACS, served from a cache folder of PNGs (see the module docstring)."""

    def __init__(self, url: str, cache: Path, modalities=("MG", "US"), refresh_s: float = 10.0,
                 session: requests.Session | None = None):
        self.pacs = Pacs(url, session)
        self.modalities = tuple(modalities)
        self._refresh_s, self._refreshed = refresh_s, time.monotonic()  # the forced refresh below comes first
        self._refreshing = threading.Lock()
        self._results: dict[str, Result | None] = {}  # SEG/SR SOPInstanceUID -> what it is about (None: unusable)
        self._skipped: dict[str, str] = {}  # image SOPInstanceUID -> why BreastLab cannot use it
        Path(cache).mkdir(parents=True, exist_ok=True)
        super().__init__(str(cache))
        self.refresh(force=True)

    def name(self) -> str:
        return self.pacs.url

    # -- reading: refresh the cache from the PACS, at most every refresh_s seconds --------------------------

    def refresh(self, force: bool = False) -> None:
        """Bring the cache in step with the PACS (images, newest SEG and SR per image)."""
        if not force and time.monotonic() - self._refreshed < self._refresh_s:
            return
        if not self._refreshing.acquire(blocking=force):
            return
        try:
            images = {sop: loc for m in self.modalities for sop, loc in self.pacs.instances(m).items()}
            self._sync_images(images)
            self._sync_labels(self._newest("SEG"))
            self._sync_assessments(self._newest("SR"))
            self._refreshed = time.monotonic()
        finally:
            self._refreshing.release()

    def _maybe_refresh(self) -> None:
        try:
            self.refresh()
        except (requests.RequestException, ValueError) as e:
            logger.warning(f"PACS {self.pacs.url} not refreshed, serving the cache: {e}")

    def _sync_images(self, images: dict[str, Location]) -> None:
        for sop in sorted(set(images) - set(self.objects) - set(self._skipped)):
            try:
                self._cache_image(images[sop], self.pacs.retrieve(images[sop]))
            except (ImageError, ValueError, requests.HTTPError) as e:  # this instance only; others go on
                self._skipped[sop] = str(e)
                logger.warning(f"PACS instance {sop} skipped: {e}")
        for gone in set(self.objects) - set(images):
            BreastLabDatastore.remove_image(self, gone)

    def _cache_image(self, loc: Location, ds: Dataset) -> None:
        check_id(loc.sop, "SOPInstanceUID")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "instance.dcm"
            ds.save_as(path, write_like_original=False)
            image = read_dicom_image(path, self.modalities)
        self._store_image(loc.sop, image.pixels, {"dicom": image.description(), "study": loc.study,
                                                  "series": loc.series, **pacs_identity(ds)})

    def _newest(self, modality: str) -> dict[tuple[str, str | None], Result]:
        """The newest SEG or SR per image id and reader (None: the final label, the image's labels), from the PACS
        (metadata fetched once per instance)."""
        newest: dict[tuple[str, str | None], Result] = {}
        for sop, loc in self.pacs.instances(modality).items():
            if sop not in self._results:
                self._results[sop] = self._result(loc, modality)
            result = self._results[sop]
            key = result and (result.image, result.reader)
            if result and result.image in self.objects and (key not in newest or result.when > newest[key].when):
                newest[key] = result
        return newest

    def _result(self, loc: Location, modality: str) -> Result | None:
        try:
            ds = self.pacs.metadata(loc)
            image, labels = read_assessment(ds) if modality == "SR" else (referenced_instance(ds), None)
            reader = labels.pop("reader", None) if labels else seg_reader(ds)
            if reader is not None:
                check_id(reader, "reader")
        except (ValueError, KeyError, AttributeError, IndexError) as e:
            logger.warning(f"PACS {modality} {loc.sop} ignored: {e}")
            return None
        return Result(image, when_made(ds), loc, labels, reader)

    def _sync_labels(self, segs: dict[tuple[str, str | None], Result]) -> None:
        """The final label and each reader's label of every image, as the newest SEGs say."""
        by_image: dict[str, dict[str, Result]] = {}
        for (image, reader), seg in segs.items():
            by_image.setdefault(image, {})[reader_tag(reader) if reader else FINAL] = seg
        for image_id, obj in self.objects.items():
            tags = {FINAL: None, **by_image.get(image_id, {})}
            tags |= {tag: None for tag in obj.labels if tag.startswith(READER_PREFIX) and tag not in tags}
            for tag, seg in tags.items():
                label = obj.labels.get(tag)
                if seg is None and label is not None:
                    BreastLabDatastore.remove_label(self, image_id, tag)
                elif seg is not None and (label is None or label.info.get("seg") != seg.loc.sop):
                    self._cache_seg(image_id, tag, seg)

    def _cache_seg(self, image_id: str, tag: str, seg: Result) -> None:
        try:
            mask = seg_mask(self.pacs.retrieve(seg.loc))
        except (ValueError, AttributeError) as e:
            logger.warning(f"PACS SEG {seg.loc.sop} ignored: {e}")
            return
        info = self.objects[image_id].image.info
        if mask.shape != (info.get("height"), info.get("width")):
            logger.warning(f"PACS SEG {seg.loc.sop} ignored: its size differs from image {image_id}")
            return
        self._store_label(image_id, tag, mask, {"seg": seg.loc.sop, **({"reader": seg.reader} if seg.reader else {})})

    def _sync_assessments(self, srs: dict[tuple[str, str | None], Result]) -> None:
        for (image_id, reader), sr in srs.items():
            label = self.objects[image_id].labels.get(reader_tag(reader)) if reader else None
            if reader and label and label.info.get("sr") != sr.loc.sop:
                update = {**dict.fromkeys(IMAGE_LABELS), **sr.labels, "sr": sr.loc.sop}
                BreastLabDatastore.update_label_info(self, image_id, reader_tag(reader), update)
            elif not reader and self.objects[image_id].image.info.get("sr") != sr.loc.sop:
                self._set_info(image_id, {**dict.fromkeys(ASSESSMENT_KEYS), **sr.labels, "sr": sr.loc.sop})

    def _set_info(self, image_id: str, info: dict) -> None:
        try:
            BreastLabDatastore.update_image_info(self, image_id, info)
        except HTTPException as e:
            logger.warning(f"PACS labels of {image_id} ignored: {e.detail}")

    # -- the MONAI Label datastore interface ------------------------------------------------------------------

    def status(self) -> dict:
        self._maybe_refresh()
        pacs = {"url": self.pacs.url, "modalities": list(self.modalities), "skipped": dict(self._skipped)}
        return {**super().status(), "pacs": pacs}

    def json(self):
        self._maybe_refresh()
        return super().json()

    def listing(self):
        self._maybe_refresh()
        return super().listing()

    def datalist(self, full_path=True):
        self._maybe_refresh()
        return super().datalist(full_path)

    def random_unlabeled(self, exclude: set[str] = frozenset(), tries: int = 64) -> str | None:
        self._maybe_refresh()
        return super().random_unlabeled(exclude, tries)

    def get_image_uri(self, image_id: str) -> str:
        if image_id not in self.objects:
            self._maybe_refresh()
        return super().get_image_uri(image_id)

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        """STOW an uploaded MG/US DICOM instance; its id is its SOPInstanceUID (``image_id`` is not used)."""
        if not is_dicom(image_filename):
            raise errors.image_error("image", ImageError("this datastore is a PACS: upload a DICOM instance",
                                                          "unsupported"))
        pixels, image = errors.read_image_upload(image_filename, self.modalities)
        ds = pydicom.dcmread(image_filename)
        loc = location(ds)
        info = checked_image_labels(image_info or {})
        self._store(ds)
        self._store_image(loc.sop, pixels, {**info, "dicom": image.description(), "study": loc.study,
                                            "series": loc.series, **pacs_identity(ds)})
        if any(info.get(key) is not None for key in ASSESSMENT_KEYS):
            self.update_image_info(loc.sop, info)
        return loc.sop

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        """A final label becomes a DICOM SEG in the PACS naming who decided it (then the cache); a reader's label a
        SEG naming the reader, and the reader's class and BI-RADS an SR; other tags stay in the cache."""
        image_id = checked_id(image_id)
        tag, info = checked_id(label_tag or FINAL, "label tag"), dict(label_info or {})
        mask = self._checked_mask(image_id, label_filename)
        reader = tag.removeprefix(READER_PREFIX) if tag.startswith(READER_PREFIX) else None
        if tag != FINAL and reader is None:
            return self._store_label(image_id, tag, mask, info)
        source = self._source(image_id)
        seg = mask_to_seg(source, mask, creator=reader or info.get("by"), reader=reader is not None)
        self._store(seg)
        self._results[seg.SOPInstanceUID] = Result(image_id, when_made(seg), location(seg), reader=reader)
        labels = {key: info[key] for key in IMAGE_LABELS if info.get(key) is not None}
        if reader and labels:
            sr = assessment_sr(source, {**labels, "reader": reader})
            self._store(sr)
            self._results[sr.SOPInstanceUID] = Result(image_id, when_made(sr), location(sr), labels, reader)
            info["sr"] = sr.SOPInstanceUID
        return self._store_label(image_id, tag, mask, {**info, "seg": seg.SOPInstanceUID})

    def update_image_info(self, image_id: str, info: dict) -> None:
        """Class, BI-RADS and probabilities (naming the model they are from) go to the PACS as an SR holding all
        three; other keys stay local."""
        info = checked_image_labels(info)
        current = self._require_image(image_id).image.info
        if any(key in info for key in ASSESSMENT_KEYS):
            labels = {key: info.get(key, current.get(key)) for key in ASSESSMENT_KEYS}
            model = ModelIdentity(**labels["model"]) if labels["model"] else None
            sr = assessment_sr(self._source(image_id), labels, model)
            self._store(sr)
            self._results[sr.SOPInstanceUID] = Result(image_id, when_made(sr), location(sr), labels)
            info["sr"] = sr.SOPInstanceUID
        super().update_image_info(image_id, info)

    def remove_image(self, image_id: str) -> None:
        raise errors.conflict(f"image {image_id!r} is an instance in the PACS {self.pacs.url}: delete it there")

    def remove_label(self, label_id: str, label_tag: str) -> None:
        if label_tag == FINAL or label_tag.startswith(READER_PREFIX):
            raise errors.conflict(f"the {label_tag} label of {label_id!r} is a SEG in the PACS {self.pacs.url}: "
                                  "delete it there")
        super().remove_label(label_id, label_tag)

    def _source(self, image_id: str) -> Dataset:
        info = self._require_image(image_id).image.info
        try:
            return self.pacs.retrieve(Location(info["study"], info["series"], image_id))
        except (requests.RequestException, KeyError) as e:
            raise errors.bad_gateway(f"cannot retrieve {image_id} from the PACS {self.pacs.url}: {e}") from e

    def _store(self, ds: Dataset) -> None:
        try:
            self.pacs.store(ds)
        except (requests.RequestException, StoreError) as e:
            raise errors.bad_gateway(f"the PACS {self.pacs.url} did not store the instance: {e}") from e


def location(ds: Dataset) -> Location:
    """Study, series and instance UIDs of an upload; 400 when one is missing or not a safe id."""
    uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    if not all(uids):
        raise errors.bad_request("DICOM instance lacks StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID")
    return Location(uids[0], uids[1], checked_id(uids[2], "SOPInstanceUID"))
