"""Tokenizers for SMILES, DNA and protein sequences.

Every tokenizer here is a ``transformers.PreTrainedTokenizerFast`` built with the ``tokenizers``
library, so a checkpoint directory written with ``save_pretrained`` is a standard Hugging Face
model directory: ``AutoTokenizer.from_pretrained(dir)`` works without this package installed.

Why strict: an alignment run that silently maps an unknown symbol to ``<unk>`` trains on a
sequence the oracle never saw. The SMILES and DNA vocabularies therefore have no unknown token;
:func:`encode_checked` turns a failed encoding into a :class:`TokenizationError` that names the
offending token and the sequence. The protein tokenizer keeps ESM's ``<unk>`` (id-compatibility
with ``EsmTokenizer``) but :func:`encode_checked` rejects it just the same.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"

#: Atom-level SMILES regex (bracket atoms whole; two-letter halogens; %nn ring bonds; bonds,
#: branches, ring digits). Characters it does not cover become pieces of their own, which are
#: then reported as unknown tokens instead of being dropped.
SMILES_PATTERN = r"\[[^\[\]]+\]|Br|Cl|%\d{2}|[BCNOPSFI]|[bcnops]|[()=#\-+\\/:~@?>*$.]|\d"

DNA_ALPHABET = "ACGT"

#: transformers' ``EsmTokenizer`` vocabulary for ESM-2, in id order.
ESM_VOCAB = (
    ["<cls>", "<pad>", "<eos>", "<unk>"]
    + list("LAGVSERTIDPKQNFYMHWCXBUZO.-")
    + ["<null_1>", "<mask>"]
)
#: The 20 standard amino acids, in ESM vocabulary order.
AMINO_ACIDS = "LAGVSERTIDPKQNFYMHWC"

ASSET_DIR = Path(__file__).parent / "assets"

#: Tokens added to every SMILES vocabulary even when the corpus lacks them (MOSES and the
#: ChEMBL subset carry no stereochemistry), so a user's stereo/salt SMILES still tokenize.
COMMON_SMILES_TOKENS = (
    ["/", "\\", ".", "@", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[S@]", "[S@@]", "[N@+]", "[N@@+]"]
    + ["[P@]", "[P@@]", "[Si]", "[Se]", "[se]", "[B-]", "[Na+]", "[K+]", "[Li+]", "[Cl-]", "[Br-]"]
    + ["[I-]", "[NH-]", "[OH-]", "[H+]", "[Zn+2]", "[Ca+2]", "[Mg+2]", "B", "b", "p"]
    + [f"%{n}" for n in range(10, 20)]
)


class TokenizationError(ValueError):
    """A sequence contains a token outside the tokenizer's vocabulary."""


def _wrap(tokenizer: Tokenizer, **special: str) -> PreTrainedTokenizerFast:
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    wrapped.model_input_names = ["input_ids", "attention_mask"]
    return wrapped


def _causal_tokenizer(vocab: list[str], pre_tokenizer, add_unk: bool) -> PreTrainedTokenizerFast:
    specials = [PAD, BOS, EOS] + ([UNK] if add_unk else [])
    ids = {tok: i for i, tok in enumerate(itertools.chain(specials, vocab))}
    tok = Tokenizer(models.WordLevel(ids, unk_token=UNK if add_unk else None))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, ids[BOS]), (EOS, ids[EOS])]
    )
    tok.add_special_tokens(specials)
    kwargs = dict(pad_token=PAD, bos_token=BOS, eos_token=EOS)
    if add_unk:
        kwargs["unk_token"] = UNK
    return _wrap(tok, **kwargs)


def smiles_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(SMILES_PATTERN), behavior="isolated")


def split_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into regex tokens; characters outside the pattern are kept as pieces."""
    return [piece for piece, _ in smiles_pre_tokenizer().pre_tokenize_str(smiles)]


def build_smiles_tokenizer(
    corpus: Iterable[str],
    min_count: int = 1,
    add_unk: bool = False,
    extra_tokens: Iterable[str] = COMMON_SMILES_TOKENS,
) -> PreTrainedTokenizerFast:
    """Atom-level SMILES tokenizer whose vocabulary is every regex token seen in ``corpus``.

    Tokens are sorted by decreasing frequency (ties alphabetically) so the vocabulary is
    deterministic for a given corpus; ``extra_tokens`` not seen in the corpus follow, in order.
    """
    pattern = re.compile(SMILES_PATTERN)
    counts: Counter[str] = Counter()
    for smiles in corpus:
        counts.update(pattern.findall(smiles))
    vocab = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    if not vocab:
        raise ValueError("cannot build a SMILES tokenizer from an empty corpus")
    vocab += [t for t in dict.fromkeys(extra_tokens) if t not in counts or counts[t] < min_count]
    return _causal_tokenizer(vocab, smiles_pre_tokenizer(), add_unk)


def build_dna_tokenizer(k: int = 1) -> PreTrainedTokenizerFast:
    """DNA tokenizer: single nucleotides (``k=1``) or non-overlapping ``k``-mers.

    In k-mer mode a sequence is cut into consecutive k-mers from its start; a tail shorter than k
    (for lengths not divisible by k) is one shorter token, so every ACGT string round-trips.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    vocab = ["".join(p) for n in range(k, 0, -1) for p in itertools.product(DNA_ALPHABET, repeat=n)]
    pre = pre_tokenizers.Split(Regex(f"[{DNA_ALPHABET}]{{1,{k}}}|[^{DNA_ALPHABET}]"), "isolated")
    return _causal_tokenizer(vocab, pre, add_unk=False)


def build_protein_tokenizer() -> PreTrainedTokenizerFast:
    """ESM alphabet, id-compatible with transformers' ``EsmTokenizer`` (``<cls> seq <eos>``)."""
    ids = {tok: i for i, tok in enumerate(ESM_VOCAB)}
    tok = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<cls> $A <eos>", special_tokens=[("<cls>", 0), ("<eos>", 2)]
    )
    tok.add_special_tokens(["<cls>", "<pad>", "<eos>", "<unk>", "<null_1>", "<mask>"])
    return _wrap(
        tok, cls_token="<cls>", pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", mask_token="<mask>"
    )


def _named(name: str) -> PreTrainedTokenizerFast | None:
    if name == "smiles":
        return AutoTokenizer.from_pretrained(str(ASSET_DIR / "smiles_tokenizer"))
    if name == "protein":
        return build_protein_tokenizer()
    match = re.fullmatch(r"dna(?:-k(\d+))?", name)
    if match:
        return build_dna_tokenizer(int(match.group(1) or 1))
    return None


NAMED_TOKENIZERS = ("smiles", "dna", "dna-k4", "protein")


def load_tokenizer(spec: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer by name (``smiles``, ``dna``, ``dna-kN``, ``protein``) or from a directory.

    ``smiles`` is the shipped vocabulary built from MOSES, ChEMBL v31 and QM9 (see
    ``networks/assets/smiles_tokenizer/README.md``). A directory is any Hugging Face model or
    tokenizer directory, or the name of a shipped checkpoint (``molgpt-moses``).
    """
    named = _named(str(spec))
    if named is not None:
        return named
    from networks.architectures import resolve_checkpoint  # a shipped checkpoint by name

    try:
        path = resolve_checkpoint(spec)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"tokenizer {spec!r} is neither a named tokenizer {NAMED_TOKENIZERS} nor a directory ({err})"
        ) from None
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"tokenizer directory {path} has no tokenizer.json")
    return AutoTokenizer.from_pretrained(str(path))


def _unknown_pieces(tokenizer: PreTrainedTokenizerFast, sequence: str) -> list[str]:
    vocab = tokenizer.get_vocab()
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(sequence)
    unknown = [p for p, _ in pieces if p not in vocab or p == tokenizer.unk_token]
    return unknown


def encode_checked(
    tokenizer: PreTrainedTokenizerFast, sequences: Sequence[str], add_special_tokens: bool = True
) -> list[list[int]]:
    """Encode ``sequences``; raise :class:`TokenizationError` naming any unknown token.

    A sequence is valid when every pre-tokenizer piece is in the vocabulary (and is not
    ``<unk>``) and the pieces cover the whole string.
    """
    backend = tokenizer.backend_tokenizer
    for s in sequences:
        if not isinstance(s, str):
            raise TokenizationError(f"expected a string, got {type(s).__name__}: {s!r}")
    try:
        encodings = backend.encode_batch(list(sequences), add_special_tokens=add_special_tokens)
    except Exception:  # the vocabulary has no <unk>: find the offending sequence
        encodings = None
    unk_id = tokenizer.unk_token_id
    if encodings is not None:
        bad = [i for i, e in enumerate(encodings) if unk_id is not None and unk_id in e.ids]
        if not bad:
            return [e.ids for e in encodings]
        first = [sequences[bad[0]]]
    else:
        first = [s for s in sequences if _unknown_pieces(tokenizer, s)][:1] or [sequences[0]]
    seq = first[0]
    unknown = _unknown_pieces(tokenizer, seq)
    shown = seq if len(seq) <= 120 else seq[:117] + "..."
    raise TokenizationError(
        f"unknown token(s) {sorted(set(unknown))} in sequence {shown!r}: "
        f"not in the tokenizer's vocabulary of {len(tokenizer)} tokens"
    )


def is_encodable(tokenizer: PreTrainedTokenizerFast, sequence: str) -> bool:
    """True when :func:`encode_checked` would accept ``sequence``."""
    return isinstance(sequence, str) and bool(sequence) and not _unknown_pieces(tokenizer, sequence)
