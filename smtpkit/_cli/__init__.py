"""The pieces of the ``smtpkit`` command; :mod:`smtpkit.cli` puts them together.

* :mod:`~smtpkit._cli.options`: the server flags and the config settings they set;
* :mod:`~smtpkit._cli.settings`: flags, environment and file layered over an app's config;
* :mod:`~smtpkit._cli.discovery`: ``module:name`` targets turned into an app or a handler;
* :mod:`~smtpkit._cli.serving`: one serving process, with its signals;
* :mod:`~smtpkit._cli.banner`: what start-up prints, and the warnings;
* :mod:`~smtpkit._cli.introspect`: ``smtpkit routes`` and ``smtpkit check``;
* :mod:`~smtpkit._cli.children`: child processes, started and stopped gently.
"""
