"""One wording for errors of the machine (memory, GPU memory, disk), used by the CLI,
batch and the plugin."""
import torch

from unet_core.errors import InputError, explain, is_out_of_memory


def test_machine_errors_say_what_helps():
    mem = explain(MemoryError("Unable to allocate 3.73 GiB for an array"))
    assert mem.startswith("not enough memory (Unable to allocate 3.73 GiB") and "block by block" in mem
    gpu = torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert is_out_of_memory(gpu) and "GPU memory" in explain(gpu) and "cpu device" in explain(gpu)
    disk = explain(OSError(28, "No space left on device", "/data/out/a.tif"))
    assert disk == ("No space left on device (OSError on /data/out/a.tif); check the disk "
                    "(free space, permissions) and run again")


def test_our_errors_and_others_keep_their_message():
    assert explain(InputError("The folder x does not exist.")) == "The folder x does not exist."
    assert explain(ValueError("bad")) == "ValueError: bad"
