"""The wrapper runtime: copied into every wrapped image as the package `veil_runner`.

It must not import Veil (the image does not contain it): only the standard library, plus flask,
gunicorn, prometheus-client and confluent-kafka, which the build context's requirements add.
"""
