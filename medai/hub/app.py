"""The hub application: JupyterHub, with a patient start for managed services.

JupyterHub gives a managed service ten one-second tries to answer and otherwise exits. The
course's formgrader is a full Jupyter server in a sandbox; on a 2-core machine that is busy (a
class logging in, a CI run) it can need longer, and a hub that refuses to start over it serves
nobody. This subclass waits up to ``service_start_timeout`` seconds instead; everything else is
JupyterHub's own code.
"""

from __future__ import annotations

import time

from jupyterhub.app import JupyterHub
from jupyterhub.objects import Server
from jupyterhub.utils import AnyTimeoutError
from traitlets import Float


class MedaiHub(JupyterHub):
    service_start_timeout = Float(
        120, config=True, help="Seconds a managed service may take to answer at hub start."
    )

    async def start_service(self, service_name, service, ssl_context=None):
        if not (service.managed and service.url):
            return await super().start_service(service_name, service, ssl_context)
        self.log.info("Starting managed service %s at %s", service_name, service.url)
        try:
            await service.start()
        except Exception:
            self.log.critical("Failed to start service %s", service_name, exc_info=True)
            return False
        deadline = time.monotonic() + self.service_start_timeout
        while time.monotonic() < deadline:
            try:
                await Server.from_orm(service.orm.server).wait_up(
                    http=True, timeout=1, ssl_context=ssl_context
                )
                return True
            except AnyTimeoutError:
                status = await service.spawner.poll()
                if status is not None:
                    self.log.critical("Service %s exited with status %s", service_name, status)
                    return False
        self.log.critical(
            "Service %s did not answer within %.0f s", service_name, self.service_start_timeout
        )
        return False


main = MedaiHub.launch_instance

if __name__ == "__main__":
    main()
