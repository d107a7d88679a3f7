"""The data sandbox: compute on private data without seeing it ("usable but invisible").

- :mod:`medai.sandbox.cohort`     the private cohort (from the deployment's data secret) and its
                                  public mock twin, with planted canaries
- :mod:`medai.sandbox.registry`   the sandboxed datasets of a course, where their files live
- :mod:`medai.sandbox.outputs`    what an analysis function may return (plain requests)
- :mod:`medai.sandbox.runner`     runs inside the data-job sandbox (untrusted side)
- :mod:`medai.sandbox.jobs`       starts that sandbox and parses what came back (trusted side)
- :mod:`medai.sandbox.disclosure` disclosure control: ACRO, OpenDP, SACRO-ML
- :mod:`medai.sandbox.audit`      the append-only, hash-chained audit log
- :mod:`medai.sandbox.store`      access grants, budgets, rate limits, held outputs
- :mod:`medai.sandbox.service`    the hub-managed HTTP service ``medai-sandbox``
- :mod:`medai.sandbox.client`     the notebook client trainees use
"""
