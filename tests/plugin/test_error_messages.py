"""The plugin words failed jobs as the command line does (unet_core.errors.explain)."""
import pytest

from napari_unet._widgets._jobs import describe_error
from unet_core.errors import ImageFileError, explain

pytestmark = pytest.mark.gui


def test_failed_jobs_use_the_engines_wording():
    err = MemoryError("Unable to allocate 2.00 GiB")
    assert describe_error(err, "Segmentation") == f"Segmentation failed: {explain(err)}"
    assert describe_error(ImageFileError("a.tif is empty."), "Batch") == "a.tif is empty."
