"""Qt side of the panel that the widget delegates: combo boxes and the Review section (needs Slicer's ``qt``)."""

from __future__ import annotations

import slicer


def fill(combo_box, names):
    """Replace a combo box's items, keeping the current choice when it is still offered."""
    current = combo_box.currentText
    combo_box.clear()
    combo_box.addItems(list(names))
    if current in names:
        combo_box.setCurrentText(current)


class ReviewPanel:
    """The Review section: the reader's name (sent with saves and hand-outs) and the reviewer's buttons, each on one
    method of the logic's ``ReviewSession``; ``show_image(review=True)`` shows a loaded image, ``update_buttons``
    refreshes the whole panel."""

    def __init__(self, ui, logic, show_image, update_buttons):
        self.ui, self.logic, self.show_image, self.update_buttons = ui, logic, show_image, update_buttons
        for button, handler in (
            (ui.nextReviewButton, self.on_next_review),
            (ui.approveConsensusButton, lambda: self.on_approve("consensus")),
            (ui.approveReaderButton, lambda: self.on_approve(f"reader:{ui.reviewReaderComboBox.currentText}")),
            (ui.approveEditedButton, lambda: self.on_approve("edited")),
            (ui.returnButton, self.on_return),
        ):
            button.connect("clicked(bool)", handler)

    def reader(self) -> str:
        return self.ui.readerEdit.text.strip()

    def on_next_review(self):
        with slicer.util.tryWithErrorDisplay("Cannot get an image for review.", waitCursor=True):
            if self.logic.review.load_next(self.reader()) is None:
                slicer.util.infoDisplay("No image awaits review.")
                return
            self.show_image(review=True)

    def show(self):
        """The state of the image under review, or the reviewer's comment on an image returned to this reader."""
        review, comment = self.logic.review, self.logic.session.comment
        fill(self.ui.reviewReaderComboBox, review.readers())
        self.ui.reviewSummaryLabel.text = review.summary() or (f"Reviewer's comment: {comment}" if comment else "")
        self.update_buttons()

    def on_approve(self, source: str):
        """Approve ``source`` with the class and BI-RADS set in the Label section (blank: the source's own)."""
        with slicer.util.tryWithErrorDisplay("Approving the label failed.", waitCursor=True):
            self.logic.review.approve(source, self.ui.classComboBox.currentText, self.ui.biradsComboBox.currentText)
            self.show()

    def on_return(self):
        with slicer.util.tryWithErrorDisplay("Returning the image failed.", waitCursor=True):
            self.logic.review.return_to_readers(self.ui.commentEdit.text)
            self.show()

    def enable(self, connected: bool) -> None:
        self.ui.nextReviewButton.enabled = connected
        reviewing = connected and self.logic.review.reviewing()
        for button in (self.ui.approveConsensusButton, self.ui.approveReaderButton, self.ui.approveEditedButton,
                       self.ui.returnButton):
            button.enabled = reviewing
