"""BreastLab: annotate breast ultrasound images with the BreastLab (MONAI Label) server's models.

The widget only wires the panel to ``BreastLabLib``: ``client`` (HTTP), ``session`` (the image, its lesion
segment, click lists and saliency overlay in the scene), ``review_mrml`` (readers and consensus for a reviewer, whose
section ``panel`` wires), ``mrml`` (array <-> node helpers) and ``results``.
"""

import numpy as np
import qt
import slicer
from BreastLabLib import mrml
from BreastLabLib.client import ServerError
from BreastLabLib.logic import BreastLabLogic
from BreastLabLib.panel import ReviewPanel, fill
from BreastLabLib.results import probabilities_text
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

TRAINING_POLL_MS = 2000


class BreastLab(ScriptedLoadableModule):
    def __init__(self, parent):
        super().__init__(parent)
        parent.title = "BreastLab"
        parent.categories = ["Segmentation"]
        parent.contributors = ["BreastLab contributors"]
        parent.helpText = (
            "Connect to a BreastLab server, get the next image to annotate, run segmentation, click-based, "
            "classification and saliency models (Ctrl+Z undoes the last AI step, never a manual edit), set the class "
            "and BI-RADS (Accept takes a calibrated model's suggestion), save the label as a reader and train. "
            "Reviewers compare the readers' masks with their consensus, then approve one or return the image."
        )
        parent.acknowledgementText = "Built on MONAI and MONAI Label. Research use only; not a medical device."


class BreastLabWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: each button calls one method of the logic's ``AnnotationSession`` (Review: ``ReviewPanel``)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = BreastLabLogic()
        self.training_timer = qt.QTimer()
        self.training_timer.setInterval(TRAINING_POLL_MS)

    def setup(self):
        super().setup()
        panel = slicer.util.loadUI(self.resourcePath("UI/BreastLab.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        for place in (self.ui.foregroundPlaceWidget, self.ui.backgroundPlaceWidget):
            place.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
        self.training_timer.connect("timeout()", self.on_training_timer)
        self.undo_shortcut = qt.QShortcut(qt.QKeySequence("Ctrl+Z"), slicer.util.mainWindow())
        self.undo_shortcut.connect("activated()", self.on_undo)
        for button, handler in (
            (self.ui.connectButton, self.on_connect),
            (self.ui.nextSampleButton, self.on_next_sample),
            (self.ui.scoreButton, self.on_score),
            (self.ui.loadImageButton, self.on_load_image),
            (self.ui.segmentButton, self.on_segment),
            (self.ui.clearPointsButton, self.on_clear_points),
            (self.ui.undoButton, self.on_undo),
            (self.ui.classifyButton, self.on_classify),
            (self.ui.saliencyButton, self.on_saliency),
            (self.ui.acceptBiradsButton, self.on_accept_birads),
            (self.ui.saveButton, self.on_save),
            (self.ui.trainButton, self.on_train),
        ):
            button.connect("clicked(bool)", handler)
        self.review_panel = ReviewPanel(self.ui, self.logic, self.show_loaded_image, self.update_buttons)
        self.ui.opacitySlider.connect("valueChanged(double)", self.on_opacity_changed)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.on_scene_closed)
        self.update_buttons()

    def cleanup(self):
        self.training_timer.stop()
        self.removeObservers()
        self.undo_shortcut.setParent(None)

    def enter(self):
        self.undo_shortcut.enabled = True  # Ctrl+Z on the main window while the module is shown, as Segment Editor's

    def exit(self):
        self.undo_shortcut.enabled = False

    def on_connect(self):
        with slicer.util.tryWithErrorDisplay("Cannot connect to the BreastLab server.", waitCursor=True):
            info = self.logic.connect(self.ui.serverUrlEdit.text.strip(), self.ui.usernameEdit.text.strip(),
                                      self.ui.passwordEdit.text)
            fill(self.ui.strategyComboBox, info.strategies)
            for kind in ("segmentation", "interactive", "classification", "saliency"):
                fill(getattr(self.ui, f"{kind}ModelComboBox"), info.models_of_type(kind))
            fill(self.ui.trainModelComboBox, sorted(info.trainers))
            self.ui.serverStatusLabel.text = f"{info.name}: {len(info.models)} model(s), strategies {info.strategies}"
            self.watch_points()
        self.update_buttons()

    def watch_points(self):
        """Re-run the interactive model whenever a foreground or background point is placed or the box is drawn."""
        session = self.logic.session
        self.removeObservers(self.on_point_placed)
        self.ui.foregroundPlaceWidget.setCurrentNode(session.foreground)
        self.ui.backgroundPlaceWidget.setCurrentNode(session.background)
        self.ui.boxPlaceWidget.setCurrentNode(session.box)
        for points in (session.foreground, session.background, session.box):
            self.addObserver(points, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.on_point_placed)

    def on_scene_closed(self, caller=None, event=None):
        """Closing the scene removed the session's nodes: start a fresh session on the same server."""
        if self.logic.session is not None:
            self.logic.new_session(self.logic.session.client)
            self.watch_points()
            self.update_buttons()

    def on_next_sample(self):
        with slicer.util.tryWithErrorDisplay("Cannot get the next sample.", waitCursor=True):
            image_id = self.logic.session.load_next(self.ui.strategyComboBox.currentText, self.review_panel.reader())
            if image_id is None:
                slicer.util.infoDisplay("The strategy has no image left (for this reader).")
                return
            self.show_loaded_image()

    def on_load_image(self):
        with slicer.util.tryWithErrorDisplay("Cannot load the image.", waitCursor=True):
            self.logic.session.load(self.ui.imageIdEdit.text.strip())
            self.show_loaded_image()

    def show_loaded_image(self, review: bool = False):
        """The image with its class and BI-RADS in the Label fields (blank for a reviewer, whose choices override)."""
        session = self.logic.session
        self.ui.imageIdEdit.text = session.image_id
        info = {} if review else session.image_info()
        self.ui.classComboBox.setCurrentText(info.get("class", ""))
        self.ui.biradsComboBox.setCurrentText(info.get("birads", ""))
        self.show_classification({})
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
        slicer.util.resetSliceViews()
        self.review_panel.show()

    def on_segment(self):
        with slicer.util.tryWithErrorDisplay("Segmentation failed.", waitCursor=True):
            result = self.logic.session.segment(self.ui.segmentationModelComboBox.currentText)
            slicer.util.showStatusMessage(f"Lesion: {result['lesion_pixels']} pixels", 3000)
            if "probabilities" in result:
                self.show_classification(result["probabilities"])
        self.update_buttons()

    def on_point_placed(self, caller=None, event=None):
        model = self.ui.interactiveModelComboBox.currentText
        if not model or self.logic.session.image_id is None:
            return
        with slicer.util.tryWithErrorDisplay("The click model failed.", waitCursor=True):
            self.logic.session.refine(model)
        self.update_buttons()

    def on_clear_points(self):
        self.logic.session.clear_points()
        self.update_buttons()

    def on_undo(self):
        with slicer.util.tryWithErrorDisplay("Undo failed.", waitCursor=True):
            pixels = self.logic.session.undo() if self.logic.session else None
            message = "No AI step to undo" if pixels is None else f"AI step undone: lesion {pixels} pixels"
            slicer.util.showStatusMessage(message, 3000)
        self.update_buttons()

    def on_classify(self):
        with slicer.util.tryWithErrorDisplay("Classification failed.", waitCursor=True):
            self.show_classification(self.logic.session.classify(self.ui.classificationModelComboBox.currentText))
        self.update_buttons()

    def show_classification(self, probabilities):
        """The class probabilities, and the model's BI-RADS suggestion beside (never in) the annotator's field."""
        suggestion = self.logic.session.suggestion
        self.ui.probabilitiesLabel.text = probabilities_text(probabilities)
        self.ui.biradsSuggestionLabel.text = suggestion.text() if suggestion else ""

    def on_accept_birads(self):
        """The annotator takes the suggestion: it goes into the BI-RADS field, saved with the label like a choice."""
        combo = self.ui.biradsComboBox
        combo.setCurrentText(self.logic.session.suggestion.accept([combo.itemText(i) for i in range(combo.count)]))

    def on_saliency(self):
        with slicer.util.tryWithErrorDisplay("Saliency failed.", waitCursor=True):
            self.logic.session.show_saliency(self.ui.saliencyModelComboBox.currentText, self.ui.opacitySlider.value)

    def on_opacity_changed(self, opacity):
        if self.logic.session is not None:
            self.logic.session.set_overlay_opacity(opacity)

    def on_save(self):
        with slicer.util.tryWithErrorDisplay("Saving the label failed.", waitCursor=True):
            info = self.logic.session.save(self.ui.classComboBox.currentText, self.ui.biradsComboBox.currentText,
                                           self.review_panel.reader())
            slicer.util.showStatusMessage(f"Saved label of {self.logic.session.image_id} {info}", 3000)

    def on_score(self):
        """Queue the diversity job and, with a segmentation model chosen, its uncertainty job (server background)."""
        with slicer.util.tryWithErrorDisplay("Cannot start scoring.", waitCursor=True):
            model = self.ui.segmentationModelComboBox.currentText
            started = self.logic.session.client.start_scoring(model or None)
            self.ui.serverStatusLabel.text = f"Scoring started: {', '.join(started)}"

    def on_train(self):
        with slicer.util.tryWithErrorDisplay("Cannot start training.", waitCursor=True):
            self.logic.session.client.start_training(self.ui.trainModelComboBox.currentText,
                                                     max_epochs=self.ui.epochsSpinBox.value)
            self.training_timer.start()
            self.on_training_timer()

    def on_training_timer(self):
        try:
            progress = self.logic.training_progress(self.ui.trainModelComboBox.currentText)
        except ServerError as e:  # busy or unreachable: say so and keep polling
            self.ui.trainStatusLabel.text = f"Training status unavailable: {e}"
            return
        self.ui.trainProgressBar.value = progress.percent
        self.ui.trainStatusLabel.text = progress.text
        if not progress.running:
            self.training_timer.stop()

    def update_buttons(self):
        connected = self.logic.session is not None
        loaded = connected and self.logic.session.image_id is not None
        self.ui.nextSampleButton.enabled = self.ui.loadImageButton.enabled = self.ui.scoreButton.enabled = connected
        self.review_panel.enable(connected)
        self.ui.trainButton.enabled = connected and self.ui.trainModelComboBox.count > 0
        for button, models in ((self.ui.segmentButton, self.ui.segmentationModelComboBox),
                               (self.ui.classifyButton, self.ui.classificationModelComboBox),
                               (self.ui.saliencyButton, self.ui.saliencyModelComboBox)):
            button.enabled = loaded and models.count > 0
        self.ui.saveButton.enabled = self.ui.clearPointsButton.enabled = loaded
        self.ui.undoButton.enabled = loaded and len(self.logic.session.steps) > 0
        self.ui.acceptBiradsButton.enabled = loaded and self.logic.session.suggestion is not None


class BreastLabTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (no server needed): the MRML side of BreastLabLib on the application's scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_image_volume_is_rows_by_columns, self.test_clicks_become_image_pixels,
                     self.test_mask_round_trips_through_a_segment, self.test_saliency_overlay_in_the_red_view):
            self.setUp()
            test()

    def image(self):
        return (np.arange(20 * 30).reshape(20, 30) % 251).astype(np.uint8)

    def test_image_volume_is_rows_by_columns(self):
        volume = mrml.add_image_volume(slicer.mrmlScene, self.image(), "BreastLabTest")
        self.assertEqual(volume.GetImageData().GetDimensions(), (30, 20, 1))
        np.testing.assert_array_equal(mrml.image_of(volume), self.image())

    def test_clicks_become_image_pixels(self):
        volume = mrml.add_image_volume(slicer.mrmlScene, self.image(), "BreastLabTest")
        points = mrml.add_point_list(slicer.mrmlScene, "BreastLabTest clicks", (0, 1, 0))
        for x, y in ((5, 2), (29, 19), (40, 3)):
            points.AddControlPointWorld(mrml.pixel_to_ras(volume, x, y))
        self.assertEqual(mrml.pixel_points(points, volume), [[5, 2], [29, 19]])

    def test_mask_round_trips_through_a_segment(self):
        volume = mrml.add_image_volume(slicer.mrmlScene, self.image(), "BreastLabTest")
        segmentation, segment_id = mrml.add_segmentation(slicer.mrmlScene, volume)
        mask = np.zeros((20, 30), np.uint8)
        mask[3:9, 4:25] = 1
        mrml.set_segment_mask(segmentation, segment_id, mask, volume)
        np.testing.assert_array_equal(mrml.segment_mask(segmentation, segment_id, volume), mask)

    def test_saliency_overlay_in_the_red_view(self):
        volume = mrml.add_image_volume(slicer.mrmlScene, self.image(), "BreastLabTest")
        overlay = mrml.show_saliency(slicer.mrmlScene, volume, self.image() / 250.0, opacity=0.3)
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceCompositeNode()
        self.assertEqual(red.GetForegroundVolumeID(), overlay.GetID())
        self.assertAlmostEqual(red.GetForegroundOpacity(), 0.3)
        self.delayDisplay("BreastLab MRML tests passed")
