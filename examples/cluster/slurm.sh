#!/usr/bin/env bash
# wrapflow on Slurm: one timely process per node, the hostfile built from the allocation.
#
#   sbatch --nodes=8 --ntasks-per-node=1 --cpus-per-task=16 examples/cluster/slurm.sh plans/wrap.sql \
#          --set input=s3://crawl/2026-10/ --set output=s3://curated/wrap-2026-10
#
# Every task runs the same plan; SLURM_PROCID is its process index, process 0 writes
# manifest.json. If a node dies, the other processes stop with a message naming it.
#SBATCH --job-name=wrapflow
#SBATCH --ntasks-per-node=1
set -euo pipefail
PLAN=$1; shift
PORT=${WRAPFLOW_PORT:-2101}
HOSTS=${SLURM_SUBMIT_DIR:-.}/hosts.$SLURM_JOB_ID
# One host:port per task, in task order (= process order).
scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\$/:$PORT/" > "$HOSTS"
srun --kill-on-bad-exit=1 bash -c "exec wrapflow run '$PLAN' --workers \${SLURM_CPUS_PER_TASK:-1} \
  --processes $SLURM_NTASKS --process \$SLURM_PROCID --hostfile '$HOSTS' --connect-timeout 300 $*"
