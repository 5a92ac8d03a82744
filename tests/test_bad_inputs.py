"""Bad user-supplied files, one row each: the input, and the clear error (file named, fix given)
or the defined result it must give (issue #26, data half).

Every row also checks that no file the user handed in was changed or removed: "nothing of theirs
lost". Files are made here; nothing outside the test's folder is read except the shipped QED
oracle config.
"""

from __future__ import annotations

import csv
import gzip
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from datamodules.scored_pairs import read_scored_samples
from datamodules.sources import DataFileError, read_records, read_table
from oracles.fitness_table import FitnessTable, LandscapeError

ROOT = Path(__file__).resolve().parents[1]
QED = ROOT / "configs" / "oracles" / "qed.yaml"


@dataclass
class Error:
    """The row must raise ``kind`` with a message matching ``text`` (a regular expression)."""

    text: str
    kind: type[BaseException] = ValueError


def _truncated_gz(lines: int = 5000) -> bytes:
    rng = random.Random(0)
    whole = gzip.compress("".join(f"C{rng.random()}\n" for _ in range(lines)).encode())
    return whole[: len(whole) // 2]


LATIN1 = "id,smiles\n1,CCO\n2,Caf\u00e9\n".encode("latin-1")  # 'é' as one byte 0xE9: not UTF-8


# ---------------------------------------------------------------- runners: what the user does


def score(inp: str, out: str, *args: str, link: str | None = None, umask: int | None = None):
    """``python -m oracles score --input inp --output out``; the output's ``input`` column, or
    with ``umask`` its permission bits. ``link``: make ``out`` a hard/symbolic link to ``inp`` first."""

    def run(tmp: Path):
        from oracles.__main__ import main

        if link == "hard":
            os.link(tmp / inp, tmp / out)
        elif link == "symbolic":
            (tmp / out).symlink_to(tmp / inp)
        old = os.umask(umask) if umask is not None else None
        try:
            main(["score", "--oracle", str(QED), "--input", str(tmp / inp), "--output", str(tmp / out), *args])
        finally:
            if old is not None:
                os.umask(old)
        if umask is not None:
            return oct((tmp / out).stat().st_mode & 0o777)
        with open(tmp / out, newline="") as handle:
            return [row["input"] for row in csv.DictReader(handle)]
    return run


def records(name: str, column: str | None = None):
    """The training records :func:`datamodules.sources.read_records` yields."""
    return lambda tmp: list(read_records(tmp / name, column))


def table(name: str):
    return lambda tmp: read_table(tmp / name).shape


def labelled(name: str):
    """The sequences a :class:`TableDataModule` (SMILES, target ``y``) trains and validates on."""

    def run(tmp: Path):
        from datamodules.tables import TableDataModule

        module = TableDataModule(str(tmp / name), targets=["y"], tokenizer="smiles", fractions=(1.0, 0.0, 0.0))
        module.setup()
        return sorted(module.data["train"][0])
    return run


def fitness(name: str, parent: str, query: list[str], **kwargs):
    """A :class:`FitnessTable` on the file; the fitness it gives the ``query`` variants (None:
    unmeasured)."""

    def run(tmp: Path):
        values = FitnessTable(str(tmp / name), parent, **kwargs)(query).values["fitness"]
        return [None if v != v else round(float(v), 6) for v in values]
    return run


def pairs(name: str, column: str | None = "smiles", **kwargs):
    """The (sequence, energy) rows of a scored-pairs file as read for ERA/DPO."""

    def run(tmp: Path):
        from networks.tokenizers import load_tokenizer

        frame = read_scored_samples(tmp / name, load_tokenizer("smiles"), column, "energy", **kwargs)
        return list(zip(frame["sequence"], frame["energy"]))
    return run


# ---------------------------------------------------------------- the table

GB1_LIKE = "Variants,HD,Count input,Fitness\nKT,0,90,1\nAT,1,12,0.06\nNA,2,33,0.5\nKA,1,8,2.5\n"

CASES = [
    # -- python -m oracles score: the input is never overwritten, and nothing is a silent success
    ("score: output is the input", {"m.smi": "CCO\nc1ccccc1\n"}, score("m.smi", "m.smi"),
     Error(r"--output .*m\.smi is the input file: the scores would replace your data", SystemExit)),
    ("score: output is the input by another path", {"m.smi": "CCO\n", "sub/x": ""}, score("m.smi", "sub/../m.smi"),
     Error("is the input file", SystemExit)),
    ("score: output is a hard link to the input", {"m.smi": "CCO\n"}, score("m.smi", "same.smi", link="hard"),
     Error("is the input file", SystemExit)),
    ("score: output is a symbolic link to the input", {"m.smi": "CCO\n"},
     score("m.smi", "same.smi", link="symbolic"), Error("is the input file", SystemExit)),
    ("score: output is a directory", {"m.smi": "CCO\n", "out/keep": "x"}, score("m.smi", "out"),
     Error(r"--output .*out is a directory; give a file path, e.g. .*out/scores\.csv", SystemExit)),
    ("score: empty input", {"m.smi": ""}, score("m.smi", "s.csv"),
     Error(r"m\.smi has nothing to score: no rows; no output written", SystemExit)),
    ("score: blank lines only", {"m.smi": "\n  \n"}, score("m.smi", "s.csv"),
     Error(r"nothing to score: 2 row\(s\), all empty", SystemExit)),
    ("score: header only", {"m.csv": "id,smiles\n"}, score("m.csv", "s.csv"),
     Error("nothing to score: no rows", SystemExit)),
    ("score: empty input keeps an existing output", {"m.smi": "", "s.csv": "old scores\n"}, score("m.smi", "s.csv"),
     Error("nothing to score", SystemExit)),
    ("score: id,smiles reads the smiles", {"m.csv": "id,smiles\n1,CCO\n2,c1ccccc1\n"}, score("m.csv", "s.csv"),
     ["CCO", "c1ccccc1"]),
    ("score: ID,SMILES,Name reads SMILES", {"m.csv": "ID,SMILES,Name\n1,CCO,ethanol\n"}, score("m.csv", "s.csv"),
     ["CCO"]),
    ("score: one unnamed column", {"m.csv": "mol\nCCO\n"}, score("m.csv", "s.csv"), ["CCO"]),
    ("score: no sequence-like column", {"m.csv": "id,structure\n1,CCO\n"}, score("m.csv", "s.csv"),
     Error(r"m\.csv has no column named like sequences .*columns are \['id', 'structure'\]: name the column "
           r"to read with --column", SystemExit)),
    ("score: two sequence-like columns", {"m.csv": "smiles,canonical_smiles\nCCO,CCO\n"}, score("m.csv", "s.csv"),
     Error(r"several columns named like sequences \['smiles', 'canonical_smiles'\]", SystemExit)),
    ("score: --column still wins", {"m.csv": "id,structure\n1,CCO\n"}, score("m.csv", "s.csv", "--column", "structure"),
     ["CCO"]),
    ("score: --column on a one-per-line file", {"m.smi": "CCO ethanol\n"}, score("m.smi", "s.csv", "--column", "x"),
     Error(r"m\.smi: --column needs a \.csv or \.tsv input", SystemExit)),
    ("score: .tab is a table too", {"m.tab": "id\tsmiles\n1\tCCO\n"}, score("m.tab", "s.csv"), ["CCO"]),
    ("score: truncated .gz", {"m.smi.gz": _truncated_gz()}, score("m.smi.gz", "s.csv"),
     Error(r"m\.smi\.gz is truncated: its gzip stream ends early after line \d+.*download the file again \(gzip -t "
           r"checks it\); no output written", SystemExit)),
    ("score: not UTF-8", {"m.csv": LATIN1}, score("m.csv", "s.csv"),
     Error(r"m\.csv is not UTF-8 text \(line 3: b'2,Caf\\xe9\\n'\): save it as UTF-8", SystemExit)),
    ("score: output honours the umask", {"m.smi": "CCO\n"}, score("m.smi", "s.csv", umask=0o027), "0o640"),

    # -- training data (SmilesFileDataModule and the other record readers)
    ("records: id,smiles reads the smiles", {"t.csv": "id,smiles\n1,CCO\n2,CCN\n"}, records("t.csv"), ["CCO", "CCN"]),
    ("records: Sequence column, any case", {"t.tsv": "chr\tSequence\n1\tACGT\n"}, records("t.tsv"), ["ACGT"]),
    ("records: no sequence-like column", {"t.csv": "id,name\n1,CCO\n"}, records("t.csv"),
     Error(r"t\.csv has no column named like sequences .*columns are \['id', 'name'\]: name the column to "
           r"read with `column` \(--data.column\)", DataFileError)),
    ("records: an explicit column", {"t.csv": "id,name\n1,CCO\n"}, records("t.csv", "name"), ["CCO"]),
    ("records: truncated .gz", {"t.txt.gz": _truncated_gz()}, records("t.txt.gz"),
     Error(r"t\.txt\.gz is truncated: its gzip stream ends early after line \d+", DataFileError)),
    ("records: not a gzip file", {"t.txt.gz": "CCO\n"}, records("t.txt.gz"),
     Error(r"t\.txt\.gz is not a readable gzip file.*drop the \.gz suffix", DataFileError)),
    ("records: not UTF-8", {"t.smi": b"CCO\nCCN\n\xff\xfeCC\n"}, records("t.smi"),
     Error(r"t\.smi is not UTF-8 text \(line 3: .*iconv", DataFileError)),
    ("tables: id,smiles reads the smiles", {"q.csv": "id,smiles,y\n1,CCO,0.5\n2,CCN,0.7\n3,CCC,0.1\n"},
     labelled("q.csv"), ["CCC", "CCN", "CCO"]),
    ("tables: no sequence-like column", {"q.csv": "id,mol,y\n1,CCO,0.5\n"}, labelled("q.csv"),
     Error(r"q\.csv has no column named like sequences \(smiles, canonical_smiles, smi\); columns are "
           r"\['id', 'mol', 'y'\]: name the column to read with sequence_column", DataFileError)),
    ("tables: not UTF-8", {"q.csv": LATIN1}, table("q.csv"), Error(r"q\.csv is not UTF-8 text \(line 3", DataFileError)),
    ("tables: truncated .gz", {"q.csv.gz": _truncated_gz()}, table("q.csv.gz"), Error(r"q\.csv\.gz is truncated")),
    ("tables: empty file", {"q.csv": ""}, table("q.csv"), Error(r"q\.csv is empty \(no header line\)")),

    # -- fitness tables
    ("fitness: n/a", {"f.csv": "AAs,fitness\nKT,1\nAT,n/a\nAA,0.3\n"}, fitness("f.csv", "MKTA", ["AA"], sites=[2, 3]),
     Error(r"f\.csv: 1 of 3 fitness value\(s\) in column 'fitness' are not finite numbers: line 3: 'n/a'; fix the "
           "table, or set drop_invalid: true", LandscapeError)),
    ("fitness: decimal commas", {"f.csv": 'AAs,fitness\nKT,1\nAT,"0,0619"\n'}, fitness("f.csv", "MKTA", [], sites=[2, 3]),
     Error(r"line 3: '0,0619' \(write decimals with a point: 0\.0619", LandscapeError)),
    ("fitness: empty cell", {"f.csv": "AAs,fitness\nKT,1\nAT,\n"}, fitness("f.csv", "MKTA", [], sites=[2, 3]),
     Error(r"line 3: ''", LandscapeError)),
    ("fitness: drop_invalid leaves them unmeasured", {"f.csv": "AAs,fitness\nKT,1\nAT,n/a\nAA,inf\n"},
     fitness("f.csv", "MKTA", ["KT", "AT", "AA"], sites=[2, 3], drop_invalid=True), [1.0, None, None]),
    ("fitness: every row unusable", {"f.csv": "AAs,fitness\nK*,1\nAT,n/a\n"},
     fitness("f.csv", "MKTA", [], sites=[2, 3], drop_invalid=True), Error(r"f\.csv: no measured variant")),
    ("fitness: variant NA is two residues", {"f.csv": GB1_LIKE}, fitness("f.csv", "MKTA", ["NA", "MNAA"], sites=[2, 3]),
     [0.5, 0.5]),
    ("fitness: wrong sites against the HD = 0 row", {"f.csv": GB1_LIKE}, fitness("f.csv", "MKTA", [], sites=[1, 3]),
     Error(r"f\.csv: the parent's residues at sites \[1, 3\] are 'MT', but the table's wild-type row \(HD = 0, "
           r"lines \[2\]\) is 'KT': check the sites \(1-indexed\) and the parent", LandscapeError)),
    ("fitness: wrong parent against the HD = 0 row", {"f.csv": GB1_LIKE}, fitness("f.csv", "MRTA", [], sites=[2, 3]),
     Error(r"are 'RT', but the table's wild-type row .* is 'KT'", LandscapeError)),
    ("fitness: wrong parent, no HD = 0 row", {"f.csv": "Variants,HD,Fitness\nAT,1,0.06\nNA,2,0.5\n"},
     fitness("f.csv", "MKAA", [], sites=[2, 3]),
     Error(r"are 'KA', but 2 row\(s\) have another HD .*line 2: 'AT HD 1', line 3: 'NA HD 2'", LandscapeError)),
    ("fitness: a site that is not a whole number", {"f.csv": "AAs,fitness\nKT,1\n"},
     fitness("f.csv", "MKTA", [], sites=[2.5, 3]), Error(r"sites \[2\.5, 3\] must be whole numbers")),
    ("fitness: a letter that is no amino acid", {"f.csv": "AAs,fitness\nKT,1\nXT,0.5\n"},
     fitness("f.csv", "MKTA", [], sites=[2, 3]),
     Error(r"f\.csv: 1 variant\(s\) in column 'AAs' with letters outside the 20 amino acids.*line 3: 'XT'")),
    ("fitness: lower case is read as upper case", {"f.csv": "AAs,fitness\nkt,1\nat,0.5\n"},
     fitness("f.csv", "MKTA", ["AT"], sites=[2, 3]), [0.5]),
    ("fitness: parent with a non-amino-acid letter", {"f.csv": "AAs,fitness\nKT,1\n"},
     fitness("f.csv", "MKTB", [], sites=[2, 3]),
     Error(r"the parent 'MKTB' has 1 letter\(s\) outside the 20 amino acids at \(position, letter\) \[\(4, 'B'\)\]")),
    ("fitness: muts with a non-amino-acid letter", {"f.csv": "AAs,fitness,muts\nKT,1,WT\nBT,0.5,K2B\n"},
     fitness("f.csv", "MKTA", []), Error(r"cannot read the muts column entry 'K2B' \(lines \[3\]; expected e\.g\. A104G")),
    ("fitness: muts against the parent", {"f.csv": "AAs,fitness,muts\nKT,1,WT\nAA,0.5,K2A:T3A\n"},
     fitness("f.csv", "MRTA", []), Error(r"do not match the table's wild type at \(site, table, parent\) \[\(2, 'K', 'R'\)\]")),
    ("fitness: a variant twice with two values", {"f.csv": "AAs,fitness\nKT,1\nAT,0.5\nAT,0.7\n"},
     fitness("f.csv", "MKTA", [], sites=[2, 3]),
     Error(r"1 variant\(s\) are listed with different fitness values \('AT': \[0\.5, 0\.7\]\); keep one row")),
    ("fitness: a variant twice with one value", {"f.csv": "AAs,fitness\nKT,1\nAT,0.5\nAT,0.5\n"},
     fitness("f.csv", "MKTA", ["AT"], sites=[2, 3]), [0.5]),

    # -- scored pairs (OfflineAlignment's data)
    ("pairs: duplicates with different energies", {"p.csv": "smiles,energy\nCCO,1\nCCN,2\nCCO,3\n"}, pairs("p.csv"),
     Error(r"p\.csv: 1 sequence\(s\) appear in 2 rows with different energies or valid flags \('CCO': energies "
           r"\[1\.0, 3\.0\]\); keep one row per sequence, or set duplicates: first", DataFileError)),
    ("pairs: duplicates: first", {"p.csv": "smiles,energy\nCCO,1\nCCN,2\nCCO,3\n"}, pairs("p.csv", duplicates="first"),
     [("CCO", 1.0), ("CCN", 2.0)]),
    ("pairs: duplicates: mean", {"p.csv": "smiles,energy\nCCO,1\nCCN,2\nCCO,3\n"}, pairs("p.csv", duplicates="mean"),
     [("CCO", 2.0), ("CCN", 2.0)]),
    ("pairs: duplicates: mean refuses mixed valid flags",
     {"p.csv": "smiles,energy,valid\nCCO,1,true\nCCN,2,true\nCCO,9,false\n"}, pairs("p.csv", duplicates="mean"),
     Error(r"marked both valid and invalid \(e\.g\. \['CCO'\]\)", DataFileError)),
    ("pairs: identical duplicates are kept", {"p.csv": "smiles,energy\nCCO,1\nCCN,2\nCCO,1\n"}, pairs("p.csv"),
     [("CCO", 1.0), ("CCN", 2.0), ("CCO", 1.0)]),
    ("pairs: sequence column by name", {"p.csv": "id,SMILES,energy\n7,CCO,1\n8,CCN,2\n"}, pairs("p.csv", column=None),
     [("CCO", 1.0), ("CCN", 2.0)]),
    ("pairs: input_ids that are not token lists", {"p.csv": "smiles,energy,input_ids\nCCO,1,[1 2]\nCCN,2,[1 3]\n"},
     pairs("p.csv"), Error(r"p\.csv: column 'input_ids' must hold lists of token ids", DataFileError)),
    ("pairs: not UTF-8", {"p.csv": "smiles,energy\nCCO,1\nCaf\u00e9,2\n".encode("latin-1")}, pairs("p.csv"),
     Error(r"p\.csv is not UTF-8 text \(line 3", DataFileError)),
]


def _write(tmp: Path, files: dict) -> dict[Path, bytes]:
    written = {}
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else content.encode()
        path.write_bytes(data)
        written[path] = data
    return written


@pytest.mark.parametrize("files, run, expect", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input(tmp_path, files, run, expect):
    given = _write(tmp_path, files)
    if isinstance(expect, Error):
        with pytest.raises(expect.kind, match=expect.text):
            run(tmp_path)
        leftovers = [p.name for p in tmp_path.rglob("*.partial")]
        assert not leftovers, f"temporary files left behind: {leftovers}"
    else:
        assert run(tmp_path) == expect
    for path, data in given.items():  # nothing of the user's lost or changed
        assert path.is_file() and path.read_bytes() == data, path
