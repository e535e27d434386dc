"""dalaba's CMS: data model, services, web app, scheduler and command line.

Importing this package pulls in nothing heavy: `import cms.models` works without Flask.
"""
