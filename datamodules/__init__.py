"""DataModules: streaming sequence corpora (SMILES, DNA), labelled tables (QM9, MPRA, DHS, CSV) and
pairs of scored samples for alignment."""

from datamodules.sequences import (
    ChemblDataModule,
    DHSDataModule,
    MosesDataModule,
    MPRADataModule,
    SequenceDataModule,
    SmilesFileDataModule,
)
from datamodules.scored_pairs import ScoredPairsDataModule
from datamodules.tables import DHSCellTypeDataModule, MPRAActivityDataModule, QM9DataModule, TableDataModule

__all__ = ["ChemblDataModule", "DHSCellTypeDataModule", "DHSDataModule", "MosesDataModule", "MPRAActivityDataModule",
           "MPRADataModule", "QM9DataModule", "ScoredPairsDataModule", "SequenceDataModule", "SmilesFileDataModule", "TableDataModule"]
