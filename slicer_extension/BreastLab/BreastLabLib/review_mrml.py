"""The reviewer's side in the MRML scene: an image's readers and their consensus as segments of one segmentation."""

from __future__ import annotations

from . import mrml
from .review import CONSENSUS, CONSENSUS_COLOR, given_labels, reader_colors, review_text
from .session import AnnotationSession


class ReviewSession:
    """Reviews images in an ``AnnotationSession``: its lesion segment becomes the ``consensus`` segment (the AI tools,
    undo and the Segment Editor edit it as before), beside one outlined segment per reader (``reader_segments``:
    reader -> segment id); ``state`` is the server's review state of the image under review."""

    def __init__(self, session: AnnotationSession):
        self.session = session
        self.state: dict | None = None
        self.reader_segments: dict[str, str] = {}
        self._segmentation = None

    def load_next(self, reviewer: str = "") -> str | None:
        """Load the image awaiting review whose readers agree least (it goes in review, for ``reviewer`` when given);
        None (and nothing changes) when none awaits review."""
        sample = self.session.client.next_sample("review", **({"reader": reviewer} if reviewer else {}))
        if sample is None:
            return None
        self.load(sample["id"])
        return sample["id"]

    def load(self, image_id: str) -> dict:
        """Show the image with its consensus and each reader's mask as segments; its review state."""
        client, session = self.session.client, self.session
        state = client.review(image_id)
        if not state["readers"]:
            raise RuntimeError(f"image {image_id!r} has no reader's label to review")
        session.load(image_id)
        segmentation, volume = session.segmentation, session.volume
        mrml.set_segment_look(segmentation, session.segment_id, CONSENSUS, CONSENSUS_COLOR)
        mrml.set_segment_mask(segmentation, session.segment_id, client.consensus(image_id), volume)
        self.reader_segments = {}
        for reader, color in reader_colors(state["readers"]).items():
            segment_id = mrml.add_segment(segmentation, reader, color, segment_id=f"reader-{reader}")
            mrml.set_segment_look(segmentation, segment_id, reader, color, fill=False)
            mrml.set_segment_mask(segmentation, segment_id, client.reader_label(image_id, reader), volume)
            self.reader_segments[reader] = segment_id
        self.state, self._segmentation = state, segmentation
        return state

    def readers(self) -> list[str]:
        return sorted(self.state["readers"]) if self.reviewing() else []

    def summary(self) -> str:
        """The review state as text: agreement, each reader's labels and scores, the consensus (``review_text``)."""
        return review_text(self.state) if self.reviewing() else ""

    def reviewing(self) -> bool:
        """Whether the session still shows the image loaded for review (not another one loaded since)."""
        return self.state is not None and self._segmentation is not None and \
            self.session.segmentation is self._segmentation and self.session.image_id == self.state["image"]

    def approve(self, source: str, image_class: str = "", birads: str = "") -> dict:
        """Make ``source`` the final label: ``consensus`` (the server's STAPLE mask), ``reader:<name>``, or ``edited``
        (the consensus segment as it is now); the class and BI-RADS given go over the source's own. The review
        state after."""
        mask = self.session.mask() if source == "edited" else None
        self.session.client.approve(self._image(), source, given_labels(image_class, birads), mask)
        return self.refresh()

    def return_to_readers(self, comment: str) -> dict:
        """Send the image back to its readers with ``comment``; the review state after."""
        self.session.client.return_image(self._image(), comment)
        return self.refresh()

    def refresh(self) -> dict:
        self.state = self.session.client.review(self._image())
        return self.state

    def _image(self) -> str:
        if not self.reviewing():
            raise RuntimeError("load an image for review first (Next for review)")
        return self.state["image"]
