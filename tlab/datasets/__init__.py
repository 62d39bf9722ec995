"""Where the images come from: the embedded (generated) domains."""
