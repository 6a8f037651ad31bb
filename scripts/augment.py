"""Fill the long tail with VAE-GAN samples: see `python scripts/augment.py --help`.

python scripts/augment.py --checkpoint outputs/train_vaegan/<run>/vaegan.safetensors --target-count max
python scripts/augment.py --checkpoint CKPT --target-count Fear=800,Disgust=600 --strategy interpolate --no-filter
"""

import sys

if __name__ == "__main__":
    # Imports inside the guard: PNG-writer processes are spawned and re-import this file.
    from ablation.generate import main

    sys.exit(main())
