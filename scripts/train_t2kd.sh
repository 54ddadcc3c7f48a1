#!/usr/bin/env bash
# T2KD from the teachers on: specialise the all-lesion teacher (models/teachers/all, trained with
#   breastlab train breast_us_t2kd --with teacher --set teacher_class=all --epochs 30)
# on benign and on malignant images, then distil the student from them and train the same student alone with the
# same recipe as the control. Logs and checkpoints go to runs/t2kd/ (the student runs') and models/teachers/<class>/.
# Usage: scripts/train_t2kd.sh [STEP ...]   steps: benign malignant distill alone ensemble (default: the first four)
set -euo pipefail
cd "$(dirname "$0")/.."
teachers=bundles/breast_us_t2kd/models/teachers
mkdir -p runs/t2kd
train() { .venv/bin/breastlab train breast_us_t2kd "$@"; }
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(benign malignant distill alone)
for s in "${steps[@]}"; do
  case $s in
    benign|malignant) train --with teacher --set teacher_class=$s --epochs 8 --set learning_rate=0.0003 \
                        --set initial_weights=$teachers/all/model.pt ;;
    distill)  train --with distill --epochs 20 --out runs/t2kd/distilled ;;
    ensemble) train --with distill --epochs 20 --set teacher_mode=ensemble --out runs/t2kd/ensemble ;;
    alone)    train --with distill --epochs 20 --set 'teacher_paths={}' --set alpha=0 --out runs/t2kd/alone ;;
    *) echo "unknown step $s" >&2; exit 2 ;;
  esac 2>&1 | tee "runs/t2kd/$s.log"
done
