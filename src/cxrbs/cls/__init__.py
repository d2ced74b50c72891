"""TB classification: training and prediction, the HOG floor, metrics with CIs, paired statistics."""
