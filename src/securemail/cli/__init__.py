"""The ``securemail`` command line: thin wrappers that read files, call the core, report."""
