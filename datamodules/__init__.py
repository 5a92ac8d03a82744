"""DataModules: streaming sequence corpora (SMILES, DNA) and labelled tables (QM9, MPRA, DHS, CSV)."""

from datamodules.sequences import (
    ChemblDataModule,
    DHSDataModule,
    MosesDataModule,
    MPRADataModule,
    SequenceDataModule,
    SmilesFileDataModule,
)
from datamodules.tables import DHSCellTypeDataModule, MPRAActivityDataModule, QM9DataModule, TableDataModule

__all__ = ["ChemblDataModule", "DHSCellTypeDataModule", "DHSDataModule", "MosesDataModule", "MPRAActivityDataModule",
           "MPRADataModule", "QM9DataModule", "SequenceDataModule", "SmilesFileDataModule", "TableDataModule"]
