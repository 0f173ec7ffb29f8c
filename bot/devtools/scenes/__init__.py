"""The scenes of `huzhu demo`, run in file-name order: each `s<NN>_<area>.py` defines
`scene(t, x, state)`."""
