"""Running qrag's work on a Ray cluster (`--ray auto|ADDRESS`): optional, `pip install 'qrag-cli[ray]'`.

Nothing outside this package imports Ray, and this package imports it only when `--ray` is given.
`cluster` starts or joins a cluster and sizes the actors; `ray_build` embeds a build's shards in
actors; `ray_query` answers batches of questions in actors. See docs/distributed.md.
"""
