"""Running rewardfit on clusters (SLURM submission with preemption and requeue)."""
