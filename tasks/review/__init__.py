"""The review side: compare measured variants across runs, models, tiers and hardware."""
