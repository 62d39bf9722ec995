"""The lab's machinery: models, data, training, the zoo of trained models, metrics."""
