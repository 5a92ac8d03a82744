"""DataModules that stream sequence data sets (SMILES, DNA) to the trainer."""

from datamodules.sequences import (
    ChemblDataModule,
    DHSDataModule,
    MosesDataModule,
    MPRADataModule,
    SequenceDataModule,
    SmilesFileDataModule,
)
from datamodules.tables import DHSCellTypeDataModule, MPRAActivityDataModule, QM9DataModule, TableDataModule  # noqa: F401

__all__ = ["ChemblDataModule", "DHSDataModule", "MosesDataModule", "MPRADataModule",
           "SequenceDataModule", "SmilesFileDataModule"]
