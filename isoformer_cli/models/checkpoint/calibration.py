"""Whether a checkpoint's unpublished settings were calibrated: the provenance keys and the warning.

A conversion of the official release (``isoformer convert``, ``isoformer models pull official``) records
``settings_calibrated=false`` in the safetensors header: its ``fusion_order``, ``head_activation`` and pool
window are this tool's best guesses, not facts. ``isoformer models calibrate`` writes ``true`` with the whole
table of candidates it tried (``calibration``). A checkpoint without the key (made by ``init``, ``finetune``,
the demo) was not converted from the release and has nothing to calibrate.
"""

from isoformer_cli.models.checkpoint.check import CheckedCheckpoint, checkpoint_metadata

CALIBRATED_KEY = "settings_calibrated"
CALIBRATION_KEY = "calibration"


def is_uncalibrated(checked: CheckedCheckpoint) -> bool:
    """True for a converted official checkpoint whose settings were not calibrated."""
    return checkpoint_metadata(checked.weights).get(CALIBRATED_KEY) == "false"


def uncalibrated_warning(checked: CheckedCheckpoint) -> str | None:
    """The one warning of a run on an uncalibrated conversion, naming the command that fixes it; None otherwise."""
    if not is_uncalibrated(checked):
        return None
    config = checked.config
    return (f"{checked.folder}: the unpublished settings of the official model (fusion_order={config.fusion_order}, "
            f"head_activation={config.head_activation}, pool window {config.pool_window_start}.."
            f"{config.pool_window_end} {config.pool_window_reference}) are guesses that were never calibrated; "
            "predictions may be wrong. Run: isoformer models calibrate CHECKPOINT --dataset isoformer-gtex "
            "--split validation --genome hg38.fa --in-place (or with --annotation/--triples and --expression)")
