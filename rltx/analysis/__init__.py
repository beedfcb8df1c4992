"""Analyses of stored runs: each reads run files, computes, and returns a `Result` that
`rltx analyze` stores as HDF5, prints as a table, or prints as JSON."""
