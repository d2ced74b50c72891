"""Getting images in: reading and writing files, manifests, preprocessing, stacks, splits, downloads, phantoms."""
