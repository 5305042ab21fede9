"""ptbench.pipelines: post-training stages, pipelines, losses and backends."""
