"""A DNA encoder is one module plus one registry line: a test-only encoder, registered here, runs through
``isoformer predict`` and ``isoformer finetune`` without any other code knowing its name."""

import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.formats.predictions import read_predictions
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders import DNA_ENCODERS, register_dna_encoder
from isoformer_cli.models.network.encoders import LayerGroups, SequenceEncoder
from isoformer_cli.models.network.tokenizers import DnaTokenizer

from cli_helpers import invoke

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
HUMAN_GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
HUMAN_GTF = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")


class _BaseTokenizer:
    def encode(self, sequence, name="DNA window"):
        return DnaTokenizer().encode(sequence), False


class BinnedConvolution(nn.Module):
    """One-hot DNA -> one strided convolution per bin -> two residual pointwise layers."""

    def __init__(self, width, bin_bp):
        super().__init__()
        self.bin = nn.Conv1d(4, width, kernel_size=bin_bp, stride=bin_bp)
        self.layers = nn.ModuleList([nn.Conv1d(width, width, 1) for _ in range(2)])

    def forward(self, input_ids, attention_mask=None):
        one_hot = torch.zeros(*input_ids.shape, 5, dtype=self.bin.weight.dtype, device=input_ids.device)
        one_hot.scatter_(-1, input_ids.clamp(0, 4).unsqueeze(-1), 1.0)
        hidden = self.bin(one_hot[..., :4].transpose(1, 2))
        for layer in self.layers:
            hidden = hidden + torch.relu(layer(hidden))
        return hidden.transpose(1, 2), None


class BinnedConvolutionEncoder(SequenceEncoder):
    """A toy DNA encoder with two fields of its own (``toy_width``, ``toy_bin_bp``)."""

    name = "toy_binned_convolution"
    modality = "dna"
    label = "toy binned convolution"
    inner_prefix = ""
    config_fields = {"toy_width": 32, "toy_bin_bp": 64}
    fixed_length = True
    summary_type = "toy_binned_convolution"

    def build(self, config):
        return BinnedConvolution(config.toy_width, config.toy_bin_bp)

    def validate(self, config):
        if config.dna_length % config.toy_bin_bp:
            raise InputError(f"dna_length {config.dna_length} is not a multiple of toy_bin_bp {config.toy_bin_bp}")

    def width(self, config):
        return config.toy_width

    def positions(self, config):
        return config.dna_length // config.toy_bin_bp

    def max_input_length(self, config):
        return config.dna_length

    def output_length(self, config, input_length):
        return input_length // config.toy_bin_bp

    def tokenizer(self, config, truncation="keep_start"):
        return _BaseTokenizer()

    def pad_id(self, config):
        return 4

    def layer_groups(self, module):
        return LayerGroups(before=[module.bin], layers=list(module.layers), after=[])

    def summary(self, config):
        return {"type": self.summary_type, "width": config.toy_width, "bin_bp": config.toy_bin_bp}

    def describe(self, summary):
        return f"toy convolution ({summary['width']} wide, {summary['bin_bp']}-bp bins)"


@pytest.fixture()
def toy_checkpoint(tmp_path):
    encoder = BinnedConvolutionEncoder()
    register_dna_encoder(encoder)
    try:
        config = IsoformerConfig.from_preset("tiny", dna_encoder_type=encoder.name)
        torch.manual_seed(0)
        folder = tmp_path / "toy"
        save_checkpoint(build_model(config), folder)
        yield folder
    finally:
        DNA_ENCODERS.pop(encoder.name)


def test_registered_encoder_is_built_saved_loaded_and_described(toy_checkpoint):
    model = load_checkpoint(toy_checkpoint)
    assert isinstance(model.dna_encoder, BinnedConvolution)
    assert model.config.toy_width == 32 and model.config.dna_bins == 2048 // 64
    summary = invoke("inspect", str(toy_checkpoint), expect=0).output
    assert "dna_encoder: toy convolution (32 wide, 64-bp bins)" in summary


def test_registered_encoder_runs_through_predict_and_finetune(toy_checkpoint, tmp_path):
    predictions = tmp_path / "predictions.tsv"
    invoke("predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", str(toy_checkpoint),
           "-o", str(predictions), expect=0)
    table = read_predictions(str(predictions))
    assert len(table.obs) == 17 and np.isfinite(table.values).all()

    expression = tmp_path / "expression.tsv"
    rng = np.random.default_rng(0)
    lines = ["transcript_id\tLiver\tBrain"] + [f"{row['transcript_id']}\t{rng.uniform(0, 50):.3f}\t{rng.uniform(0, 50):.3f}"
                                                for row in table.obs]
    expression.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    invoke("finetune", "-o", str(run), "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
           "--expression", str(expression), "--checkpoint", str(toy_checkpoint), "--epochs", "1", "--batch-size", "4",
           "--freeze", "dna:1", "--activation-checkpointing", "--val-fraction", "0.2", "--test-fraction", "0.2", expect=0)
    trained = load_checkpoint(run / "last")
    start = load_checkpoint(toy_checkpoint)
    # --freeze dna:1 keeps the last of the toy's two layers trainable and freezes the rest of it.
    assert torch.equal(trained.dna_encoder.bin.weight, start.dna_encoder.bin.weight)
    assert torch.equal(trained.dna_encoder.layers[0].weight, start.dna_encoder.layers[0].weight)
    assert not torch.equal(trained.dna_encoder.layers[1].weight, start.dna_encoder.layers[1].weight)


def test_unknown_encoder_type_names_the_registered_ones():
    with pytest.raises(InputError, match="dna_encoder_type='nope'; choose one of enformer, nucleotide_transformer"):
        IsoformerConfig.from_preset("tiny", dna_encoder_type="nope")
