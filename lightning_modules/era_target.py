"""What an ERA target implies, estimated before (or after) training from scored reference samples.

ERA's minimiser is π* ∝ exp(−β'U + γ' log π_ref) (``losses`` module docstring). Why estimate its
statistics: a run that ends short of the target could be under-trained or aimed wrong, and the two
call for different fixes (more steps or a larger learning rate, versus another β or γ). With
samples yᵢ from a proposal q and their energies, reference and proposal log-probabilities, the
self-normalised importance weights

    wᵢ ∝ π*(yᵢ) / q(yᵢ) = exp(−β'Uᵢ + γ' log π_ref(yᵢ) − log q(yᵢ))

give E_π*[f] ≈ Σ wᵢ f(yᵢ) for any per-sample value f (a property, validity), and the effective
sample size 1 / Σ wᵢ² says how far to trust it: a few effective samples mean π* lies where the
samples are thin (γ = 0 typically: the weights then favour the rarest samples).

Samples drawn from the reference without top-k have q = π_ref. With top-k, q is the truncated
sampler, and using π_ref for it estimates π* restricted to what the sampler can reach, reweighted
by the truncation; pass the sampler's own log-probabilities where they were kept.

    python -m lightning_modules.era_target runs/era/qed/offline_samples.parquet --beta 50 200 1000 --gamma 9

It also says how hard the pairs pull: |ℓ* − ℓ_ref|, the nats by which a pair's target odds differ
from the reference's odds, over pairs of a valid and an invalid sample (``pair_shifts``). Why: the
invalid penalty only has to be high enough that π* holds no invalid mass; past that it changes π*
no further but makes these pairs ask for ever larger moves, which from a weak reference (a third of
its samples invalid) made ERA diverge (docs/results/era.md). ``--invalid-energy`` rescores the invalid
samples to compare penalties before training.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import torch

from lightning_modules.losses import check_finite, era_logits, era_scales


@dataclass(frozen=True)
class TargetEstimate:
    """E_π*[value] for each value column, the share of π*'s mass on ``valid`` samples, and the
    effective sample size of the importance weights."""

    means: dict[str, float]
    valid_mass: float
    effective_samples: float


def era_target_weights(energies: torch.Tensor, ref_logps: torch.Tensor, beta: float, gamma: float,
                       proposal_logps: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised importance weights of π* ∝ exp(−β'U + γ' log π_ref) for samples from the
    proposal (``None``: the reference itself). Non-finite inputs are an error."""
    beta_p, gamma_p = era_scales(beta, gamma)
    proposal_logps = ref_logps if proposal_logps is None else proposal_logps
    for name, tensor in (("energies", energies), ("ref_logps", ref_logps), ("proposal_logps", proposal_logps)):
        if tensor.numel() == 0:
            raise ValueError(f"{name} is empty: no samples to weight")
        check_finite(name, tensor)
    log_w = -beta_p * energies.double() + gamma_p * ref_logps.double() - proposal_logps.double()
    return torch.softmax(log_w, dim=0)


def estimate_target(values: dict[str, torch.Tensor], valid: torch.Tensor, energies: torch.Tensor,
                    ref_logps: torch.Tensor, beta: float, gamma: float,
                    proposal_logps: torch.Tensor | None = None) -> TargetEstimate:
    """E_π*[v] for each value tensor (NaN values, e.g. a property of an invalid molecule, are
    averaged over the samples where they are defined), π*'s valid share, and the ESS."""
    w = era_target_weights(energies, ref_logps, beta, gamma, proposal_logps)
    means = {}
    for name, v in values.items():
        v = v.double()
        defined = torch.isfinite(v)
        mass = w[defined].sum()
        means[name] = float((w[defined] * v[defined]).sum() / mass) if mass > 0 else float("nan")
    return TargetEstimate(means, float(w[valid.bool()].sum()), float(1.0 / (w * w).sum()))


def pair_shifts(energies: torch.Tensor, ref_logps: torch.Tensor, beta: float, gamma: float,
                i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """|ℓ* − ℓ_ref| for pairs (i, j): how many nats each pair's ERA target moves its odds away from
    the reference's, |−β'(U_j − U_i) + (γ' − 1)(log π_ref(y_j) − log π_ref(y_i))|."""
    ref_1, ref_2 = ref_logps[i].double(), ref_logps[j].double()
    # with the reference as the "policy", era_logits returns (ℓ_ref, ℓ*)
    ref_odds, target = era_logits(ref_1, ref_2, ref_1, ref_2, energies[i].double(), energies[j].double(), beta, gamma)
    return (target - ref_odds).abs()


def mixed_pairs(valid: torch.Tensor, max_pairs: int = 200_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of one valid and one invalid sample: all of them, or ``max_pairs`` drawn with a seed
    (with replacement: enough for quantiles, and memory stays O(max_pairs) for any set size)."""
    good, bad = torch.nonzero(valid.bool()).flatten(), torch.nonzero(~valid.bool()).flatten()
    total = len(good) * len(bad)
    if total <= max_pairs:
        pick = torch.arange(total)
    else:
        pick = torch.randint(total, (max_pairs,), generator=torch.Generator().manual_seed(seed))
    return good[pick // max(len(bad), 1)], bad[pick % max(len(bad), 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The statistics ERA's target implies, from an offline sample set")
    parser.add_argument("samples", help="an offline sample set (Parquet) written by OfflineAlignment")
    parser.add_argument("--beta", type=float, nargs="+", required=True)
    parser.add_argument("--gamma", type=float, nargs="+", default=[0.0])
    parser.add_argument("--invalid-energy", type=float, default=None,
                        help="rescore the invalid samples at this energy (to compare penalties before training)")
    args = parser.parse_args(argv)

    import pandas as pd
    import pyarrow.parquet as pq

    from datamodules.reference_samples import SETTINGS_KEY

    frame = pd.read_parquet(args.samples)
    missing = {"energy", "ref_logprob", "valid"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{args.samples} lacks the column(s) {sorted(missing)}: not an offline sample set")
    settings = json.loads((pq.read_schema(args.samples).metadata or {}).get(SETTINGS_KEY, b"{}"))
    if settings.get("top_k"):
        print(f"note: sampled with top-k {settings['top_k']}; the reference stands in for the sampler "
              "(see the module docstring)")
    column = lambda name: torch.tensor(frame[name].to_numpy(dtype="float64"))  # noqa: E731
    values = {name.removeprefix("value_"): column(name) for name in frame.columns if name.startswith("value_")}
    values["energy"] = column("energy")
    valid = torch.tensor(frame["valid"].to_numpy(dtype=bool))
    if args.invalid_energy is not None:
        values["energy"] = torch.where(valid, values["energy"], torch.tensor(args.invalid_energy, dtype=torch.float64))
    print(f"{len(frame)} samples; reference: " + ", ".join(
        f"{name} {float(v[torch.isfinite(v)].mean()):.4f}" for name, v in values.items()) + f", validity {float(valid.double().mean()):.4f}")
    print("| β | γ | " + " | ".join(values) + " | valid mass | effective samples | valid-vs-invalid pair shift, median / 90 % (nats) |")
    print("|---|---|" + "---|" * (len(values) + 3))
    energies, ref_logps = values["energy"], column("ref_logprob")
    i, j = mixed_pairs(valid)
    for gamma in args.gamma:
        for beta in args.beta:
            est = estimate_target(values, valid, energies, ref_logps, beta, gamma)
            cells = " | ".join(f"{est.means[name]:.4f}" for name in values)
            shift = pair_shifts(energies, ref_logps, beta, gamma, i, j)
            shift_cell = f"{float(torch.quantile(shift, 0.5)):.1f} / {float(torch.quantile(shift, 0.9)):.1f}" if len(shift) else "no invalid samples"
            print(f"| {beta:g} | {gamma:g} | {cells} | {est.valid_mass:.4f} | {est.effective_samples:.1f} | {shift_cell} |")


if __name__ == "__main__":
    main()
