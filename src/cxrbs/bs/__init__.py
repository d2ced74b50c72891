"""Bone suppression: augmentation of pairs, loss, quality metrics, training, evaluation, applying a model."""
