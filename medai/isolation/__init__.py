"""Every sandbox on one machine: bubblewrap profiles, limits, cgroups and private networks.

- :mod:`medai.isolation.limits`   resource limits as plain data (rendered to pods later);
- :mod:`medai.isolation.bwrap`    the one bubblewrap command-line builder (:class:`Profile`);
- :mod:`medai.isolation.profiles` trainee server, formgrader, grading job (their differences);
- :mod:`medai.isolation.cgroups`  memory, process and CPU limits per sandbox;
- :mod:`medai.isolation.launch`   starts a long-lived server in its sandbox, cgroup and network.
"""
