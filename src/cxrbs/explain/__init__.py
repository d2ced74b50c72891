"""Why a classifier decided: class-selective relevance maps, Grad-CAM, feature-space analysis."""
