"""The deterministic simulator: real nodes (`host_node`) over virtual time, network and disk.

`simulator` runs one seed (`options.swarm_options` draws its cluster, faults and workload;
`nemesis` and `membership` inject the faults, `kafka_workload` adds a Kafka topic);
`sweep` runs many. Everything random comes from the seed, so a run replays exactly.
"""
