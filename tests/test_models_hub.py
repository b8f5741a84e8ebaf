"""``isoformer models``: pull, resume, verification, offline mode and predicting with what was pulled,
against a local hub (tests/local_hub.py: a loopback HTTP server, 127.0.0.1 only).

The repositories are laid out as the real ones: InstaDeepAI/isoformer with config.json, the tokenizer files
and a pytorch_model.bin (tests/official_format.py, a tiny model in the documented layout); the three
encoder repositories with their configuration and weights in the formats they ship (enformer-pytorch's
pytorch_model.bin with both spellings and species heads; NT-v2's pytorch_model.bin in the transformers 4.x
masked-LM layout; ESM-2's model.safetensors from ``EsmForMaskedLM.save_pretrained``).
"""

import hashlib
import io
import json
import os

import pytest
import torch
from huggingface_hub import constants as hub_constants

from isoformer_cli.errors import DownloadError
from isoformer_cli.models.checkpoint.load import load_checkpoint
from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.distribution import registry
from isoformer_cli.models.distribution.hub import fetch_repository
from isoformer_cli.models.distribution.registry import RepoFile, Repository
from isoformer_cli.models.distribution.store import MANIFEST_FILE

from cli_helpers import HUMAN_GENOME, HUMAN_GTF, invoke
from local_hub import LocalHub
from official_format import official_config_json, official_state, small_model, vocabulary_files
from test_init import save_enformer, save_esm, save_nt

OFFICIAL = "InstaDeepAI/isoformer"
# huggingface_hub writes what it receives in chunks of this size (10 MB by default, larger than these files): a
# dropped connection resumes from the last whole chunk.
CHUNK = 64 * 1024


def torch_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def official_files():
    """``(files, model)``: the official repository's files for a tiny model, and that model."""
    config, model = small_model()
    files = dict(vocabulary_files())
    files["config.json"] = json.dumps(official_config_json(config), indent=2).encode()
    files["pytorch_model.bin"] = torch_bytes(official_state(model, config, "documented"))
    return files, model


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    """``{repo_id: files}`` of the three encoder repositories (tiny sizes)."""
    root = tmp_path_factory.mktemp("encoders")
    repositories = {}
    for repo_id, save in (("EleutherAI/enformer-official-rough", save_enformer),
                          ("InstaDeepAI/nucleotide-transformer-v2-250m-multi-species", save_nt),
                          ("facebook/esm2_t30_150M_UR50D", save_esm)):
        folder = root / repo_id.replace("/", "__")
        folder.mkdir()
        save(folder)
        repositories[repo_id] = {path.name: path.read_bytes() for path in folder.iterdir()}
    # NT-v2's repository ships its weights as a transformers 4.x pytorch_model.bin.
    from safetensors.torch import load_file

    nt = repositories["InstaDeepAI/nucleotide-transformer-v2-250m-multi-species"]
    nt["pytorch_model.bin"] = torch_bytes(load_file(str(root / "InstaDeepAI__nucleotide-transformer-v2-250m-multi-"
                                                            "species" / "model.safetensors")))
    del nt["model.safetensors"]
    assert "pytorch_model.bin" in repositories["InstaDeepAI/nucleotide-transformer-v2-250m-multi-species"]
    assert "model.safetensors" in repositories["facebook/esm2_t30_150M_UR50D"]
    return repositories


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """A running local hub, with the environment of a user pointing HF_ENDPOINT at it."""
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("ISOFORMER_MODEL_DIR", str(tmp_path / "models"))
        monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
        yield server


def go_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def last_line(result):
    return result.output.rstrip("\n").splitlines()[-1]


def downloads(tmp_path):
    folder = tmp_path / "models" / ".downloads"
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) \
        if folder.exists() else []


def predict_rows(checkpoint, out):
    result = invoke("predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", checkpoint,
                    "-o", out)
    assert result.exit_code == 0, result.output
    return [line for line in out.read_text().splitlines() if not line.startswith("#")]


def test_pull_official_then_predict(tmp_path, hub, official_files):
    files, model = official_files
    commit = hub.add(OFFICIAL, files)
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 0, result.output

    folder = tmp_path / "models" / "official"
    loaded = load_checkpoint(str(folder))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    source = manifest["sources"][0]
    assert (source["repo_id"], source["commit"], source["revision_requested"]) == (OFFICIAL, commit, "main")
    weights = next(item for item in source["files"] if item["name"] == "pytorch_model.bin")
    assert weights["sha256"] == hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    assert weights["checks"] == ["size and SHA-256 match the hub"]
    vocabulary = next(item for item in source["files"] if item["name"] == "dna_vocab_list.txt")
    assert vocabulary["checks"] == ["size matches the registry", "size and git blob id match the hub"]
    assert manifest["files"]["model.safetensors"]["sha256"] == \
        hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["provenance"]["self_check_protein_encoder"].startswith("passed")
    assert manifest["provenance"]["pulled_from_0"] == f"{OFFICIAL}@{commit}"
    assert downloads(tmp_path) == []  # removed after a successful pull (--keep-downloads keeps them)

    # predict --checkpoint official gives what the source model itself gives.
    reference = tmp_path / "reference"
    save_checkpoint(model, str(reference))
    assert predict_rows("official", tmp_path / "pulled.tsv") == predict_rows(str(reference), tmp_path / "ref.tsv")

    listing = invoke("models", "list", "--json")
    assert listing.exit_code == 0, listing.output
    present = json.loads(listing.output)["present"]
    assert [(item["name"], item["sha256"]) for item in present] == [("official",
                                                                      manifest["files"]["model.safetensors"]["sha256"])]
    assert present[0]["provenance"].startswith(f"isoformer models pull official (isoformer convert) from {OFFICIAL}@")
    assert invoke("models", "path", "official").output == f"{folder}\n"
    verified = invoke("models", "verify", "official")
    assert verified.exit_code == 0, verified.output
    assert "model.safetensors: " in verified.output and "matches the manifest" in verified.output

    again = invoke("models", "pull", "official", "--preset", "tiny")
    assert again.exit_code == 1
    assert "official is already pulled" in last_line(again)


def test_a_dropped_connection_is_resumed(tmp_path, hub, official_files):
    files, _ = official_files
    hub.add(OFFICIAL, files)
    half = len(files["pytorch_model.bin"]) // 2
    hub.fault(OFFICIAL, "pytorch_model.bin", drop_after=half, drops=1)
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 0, result.output
    ranges = [entry[2] for entry in hub.requests("GET", "/pytorch_model.bin")]
    assert ranges == [None, f"bytes={half - half % CHUNK}-"]
    assert (tmp_path / "models" / "official" / "model.safetensors").exists()


def test_an_interrupted_pull_continues_where_it_stopped(tmp_path, hub, official_files):
    files, _ = official_files
    hub.add(OFFICIAL, files)
    size = len(files["pytorch_model.bin"])
    third = size // 3
    received = third - third % CHUNK
    hub.fault(OFFICIAL, "pytorch_model.bin", drop_after=third, drops=1, failures=1, fail_status=503)
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 1
    assert last_line(result).startswith(f"isoformer: error: download of {OFFICIAL}/pytorch_model.bin stopped after "
                                        f"{received:,} of {size:,} bytes (")
    assert last_line(result).endswith("rerun the same command to continue where it stopped")
    part = tmp_path / "models" / ".downloads" / "InstaDeepAI__isoformer" / "pytorch_model.bin.part"
    assert part.stat().st_size == received
    assert not (tmp_path / "models" / "official").exists()

    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 0, result.output
    assert hub.requests("GET", "/pytorch_model.bin")[-1][2] == f"bytes={received}-"
    # The small files of the first attempt were not fetched again.
    assert len(hub.requests("GET", "/rna_vocab_list.txt")) == 1
    assert not part.exists()


def test_a_checksum_mismatch_keeps_nothing(tmp_path, hub, official_files, monkeypatch):
    files, _ = official_files
    hub.add(OFFICIAL, files)
    damaged = bytearray(files["pytorch_model.bin"])
    damaged[len(damaged) // 2] ^= 0xFF
    hub.fault(OFFICIAL, "pytorch_model.bin", corrupt=bytes(damaged))
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 1
    expected = hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    assert last_line(result) == (
        f"isoformer: error: {OFFICIAL}/pytorch_model.bin (downloaded) failed verification: its SHA-256 is "
        f"{hashlib.sha256(bytes(damaged)).hexdigest()}, the hub says {expected}; nothing of this download was kept; "
        "the download was corrupted or the file changed on the hub, run the command again")
    assert downloads(tmp_path) == [] and not (tmp_path / "models" / "official").exists()

    # A SHA-256 the registry knows is checked too.
    del hub.faults[(OFFICIAL, "pytorch_model.bin")]
    entry = registry.OFFICIAL_REPOSITORY
    files_known = tuple(RepoFile(f.name, f.size, "0" * 64, f.alternatives, f.optional)
                        if f.name == "pytorch_model.bin" else f for f in entry.files)
    monkeypatch.setitem(registry.KNOWN_MODELS, "official", registry.KnownModel(
        "official", "convert", "test", "test", (Repository(entry.repo_id, entry.role, files_known, entry.licence,
                                                           entry.approximate_size),)))
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 1
    assert f"its SHA-256 is {expected}, the registry says {'0' * 64}" in last_line(result)
    assert downloads(tmp_path) == [] and not (tmp_path / "models" / "official").exists()


def test_a_failed_self_check_stores_nothing_and_keeps_the_downloads(tmp_path, hub, official_files):
    """A --set that changes what ESM-2 computes: the conversion's self-check fails, no checkpoint appears, and
    the verified downloads stay for the next pull, which needs no download."""
    files, _ = official_files
    hub.add(OFFICIAL, files)
    result = invoke("models", "pull", "official", "--preset", "tiny", "--set", "esm_token_dropout=false")
    assert result.exit_code == 1
    assert last_line(result).startswith("isoformer: error: self-check failed: protein_encoder FAILED: ")
    assert last_line(result).endswith("nothing was written")
    assert not (tmp_path / "models" / "official").exists()
    assert "InstaDeepAI__isoformer/pytorch_model.bin" in downloads(tmp_path)
    gets = len(hub.requests("GET"))
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 0, result.output
    assert len(hub.requests("GET")) == gets
    manifest = json.loads((tmp_path / "models" / "official" / MANIFEST_FILE).read_text())
    assert {item["origin"] for item in manifest["sources"][0]["files"]} == {"earlier download"}


def test_offline_says_what_to_copy_where_then_works_from_copied_files(tmp_path, hub, official_files, monkeypatch):
    files, _ = official_files
    hub.add(OFFICIAL, files)
    go_offline(monkeypatch)
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 1
    folder = tmp_path / "models" / ".downloads" / "InstaDeepAI__isoformer"
    assert result.output == (
        f"isoformer: error: offline (HF_HUB_OFFLINE is set) and {OFFICIAL} is not downloaded: copy config.json, "
        f"pytorch_model.bin from {hub.url}/{OFFICIAL} into {folder}, then run the command again (or unset "
        "HF_HUB_OFFLINE to download)\n")
    assert hub.log == []

    for name in ("config.json", "pytorch_model.bin", "dna_vocab_list.txt"):
        (folder / name).write_bytes(files[name])
    result = invoke("models", "pull", "official", "--preset", "tiny")
    assert result.exit_code == 0, result.output
    assert hub.log == []
    manifest = json.loads((tmp_path / "models" / "official" / MANIFEST_FILE).read_text())
    origins = {item["name"]: (item["origin"], item["checks"]) for item in manifest["sources"][0]["files"]}
    assert origins["pytorch_model.bin"] == ("placed by hand", ["not verified (no checksum known); SHA-256 recorded"])
    assert origins["dna_vocab_list.txt"] == ("placed by hand", ["size matches the registry"])
    assert predict_rows("official", tmp_path / "offline.tsv")


def test_the_hugging_face_cache_is_used_online_and_offline(tmp_path, hub, official_files, monkeypatch):
    """Files already in $HF_HOME's cache (hf download, transformers) are not downloaded again."""
    from huggingface_hub import hf_hub_download

    files, _ = official_files
    hub.add(OFFICIAL, files)
    for name in files:
        hf_hub_download(OFFICIAL, name, endpoint=hub.url, cache_dir=str(tmp_path / "hf-home" / "hub"))
    before = len(hub.requests("GET"))
    go_offline(monkeypatch)
    result = invoke("models", "pull", "official", "--preset", "tiny", "--name", "cached")
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    result = invoke("models", "pull", "official", "--preset", "tiny", "--name", "online")
    assert result.exit_code == 0, result.output
    assert len(hub.requests("GET")) == before  # only HEAD requests: the content came from the cache
    manifest = json.loads((tmp_path / "models" / "online" / MANIFEST_FILE).read_text())
    assert {item["origin"] for item in manifest["sources"][0]["files"]} == {"Hugging Face cache"}


def test_hf_token_reaches_the_hub(tmp_path, hub, monkeypatch):
    hub.add("owner/private", {"config.json": b"{}"}, token="hf_secret")
    repository = Repository("owner/private", "official", (RepoFile("config.json"),), "none", "1 kB")
    with pytest.raises(DownloadError, match=r"access is restricted; accept its terms on the hub and set HF_TOKEN"):
        fetch_repository(repository, str(tmp_path / "private"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    fetched = fetch_repository(repository, str(tmp_path / "private"))
    assert fetched.files["config.json"].size == 2
    assert hub.log[-1][3] == "Bearer hf_secret"
    with pytest.raises(DownloadError, match=r"owner/absent \(revision main\) at http://127\.0\.0\.1:\d+: repository "
                                            r"not found \(or private: set HF_TOKEN"):
        fetch_repository(Repository("owner/absent", "official", (RepoFile("config.json"),), "none", "1 kB"),
                         str(tmp_path / "absent"))
    with pytest.raises(DownloadError, match=r"no revision 'v9'"):
        fetch_repository(repository, str(tmp_path / "private"), revision="v9")


def test_unreachable_hub_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("ISOFORMER_MODEL_DIR", str(tmp_path / "models"))
    result = invoke("models", "pull", "official")
    assert result.exit_code == 1
    assert last_line(result).startswith(f"isoformer: error: cannot reach http://127.0.0.1:9 for {OFFICIAL} (")
    assert "set HF_HUB_OFFLINE=1 and copy the files by hand" in last_line(result)


def test_pull_encoders_then_predict(tmp_path, hub, encoder_files):
    for repo_id, files in encoder_files.items():
        hub.add(repo_id, files)
    result = invoke("models", "pull", "encoders", "--preset", "tiny", "--keep-downloads")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "models" / "encoders"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert [source["repo_id"] for source in manifest["sources"]] == list(encoder_files)
    nt = manifest["sources"][1]["files"]
    assert [item["name"] for item in nt] == ["config.json", "pytorch_model.bin"]  # the alternative it ships
    for component in ("dna_encoder", "rna_encoder", "protein_encoder"):
        assert manifest["provenance"][f"self_check_{component}"].startswith("passed"), component
    assert "EleutherAI__enformer-official-rough/pytorch_model.bin" in downloads(tmp_path)
    assert predict_rows("encoders", tmp_path / "encoders.tsv")

    verified = invoke("models", "verify", "encoders")
    assert verified.exit_code == 0, verified.output
    assert "kept download matches the manifest" in verified.output
    removed = invoke("models", "remove", "encoders")
    assert removed.exit_code == 0, removed.output
    assert not folder.exists() and downloads(tmp_path) == []


def test_verify_finds_a_changed_file_and_names_are_checked(tmp_path, hub, official_files):
    files, _ = official_files
    hub.add(OFFICIAL, files)
    assert invoke("models", "pull", "official", "--preset", "tiny", "--name", "mine").exit_code == 0
    weights = tmp_path / "models" / "mine" / "model.safetensors"
    content = bytearray(weights.read_bytes())
    content[-1] ^= 0xFF
    weights.write_bytes(bytes(content))
    result = invoke("models", "verify", "mine")
    assert result.exit_code == 1
    assert "mine failed verification: model.safetensors has" in last_line(result)
    assert "the manifest records" in last_line(result)

    for arguments, message in (
        (("models", "pull", "unknown"), "unknown model 'unknown'; known models: official, encoders, demo"),
        (("models", "pull", "official", "--name", "../x"), "'../x' is not a checkpoint name"),
        (("models", "path", "absent"), "checkpoint 'absent' is not in the model folder"),
        (("models", "remove", "demo"), "'demo' is bundled with isoformer and cannot be removed"),
        (("predict", "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF, "--checkpoint", "encoders", "-o",
          tmp_path / "x.tsv"), "get it with: isoformer models pull encoders"),
    ):
        result = invoke(*arguments)
        assert result.exit_code == 1, arguments
        assert message in last_line(result), (arguments, result.output)
    assert invoke("models", "pull", "demo").exit_code == 0
    assert invoke("models", "path", "demo").output.strip().endswith(os.path.join("data", "demo_checkpoint"))
    assert invoke("models", "remove", "mine").exit_code == 0
    assert not (tmp_path / "models" / "mine").exists()


def test_registry_sizes_match_the_vocabularies_this_tool_uses():
    """The sizes the registry states for the tokenizer files are those of this tool's vocabularies."""
    generated = vocabulary_files()
    for entry in registry.OFFICIAL_REPOSITORY.files:
        if entry.size is not None:
            assert len(generated[entry.name]) == entry.size, entry.name
        assert entry.sha256 is None  # never invented: no SHA-256 has been read from the repository
