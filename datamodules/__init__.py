"""DataModules: streaming sequence corpora (SMILES, DNA), labelled tables (QM9, MPRA, DHS, CSV) and
pairs of scored samples for alignment, and the reference's own stored samples."""

from datamodules.sequences import (
    ChemblDataModule,
    DHSDataModule,
    MosesDataModule,
    MPRADataModule,
    SequenceDataModule,
    SmilesFileDataModule,
)
from datamodules.reference_samples import ReferenceSamples
from datamodules.scored_pairs import ScoredPairsDataModule
from datamodules.tables import DHSCellTypeDataModule, MPRAActivityDataModule, QM9DataModule, TableDataModule

__all__ = ["ChemblDataModule", "DHSCellTypeDataModule", "DHSDataModule", "MosesDataModule", "MPRAActivityDataModule",
           "MPRADataModule", "QM9DataModule", "ReferenceSamples", "ScoredPairsDataModule", "SequenceDataModule", "SmilesFileDataModule", "TableDataModule"]
