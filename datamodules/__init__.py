"""DataModules that stream sequence data sets (SMILES, DNA) to the trainer."""

from datamodules.sequences import (
    ChemblDataModule,
    DHSDataModule,
    MosesDataModule,
    MPRADataModule,
    SequenceDataModule,
    SmilesFileDataModule,
)

__all__ = ["ChemblDataModule", "DHSDataModule", "MosesDataModule", "MPRADataModule",
           "SequenceDataModule", "SmilesFileDataModule"]
