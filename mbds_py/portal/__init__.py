"""The online client (paper: "Client category of MBDS system"): a web portal for one patient or doctor.

* :mod:`.discovery` — the running network, from its public state folder;
* :mod:`.app` — the participant's unlocked keys, what the page shows and does;
* :mod:`.views` — server-rendered, escaped HTML sections;
* :mod:`.live` — chain events → the sections they change (server-sent events);
* :mod:`.server` — ``mbds portal --as NAME`` on localhost.
"""
