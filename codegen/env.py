"""The one Jinja environment every template renders in.

Text from a spec or a command line reaches a template only through the filters ``docstring``
(inside a module's ``\"\"\"`` docstring) and ``comment`` (after a ``#``): see ``derive.escape``.
"""
import jinja2

from derive.escape import python_comment, python_docstring

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("codegen", "templates"),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)
ENV.filters.update(docstring=python_docstring, comment=python_comment)
