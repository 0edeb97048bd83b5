import re

from setuptools import setup

version = re.search(r'__version__ = "(.+)"', open("txchat/__init__.py", encoding="utf-8").read()).group(1)

setup(
    name="txchat",
    version=version,
    description="A real-time web chat server on Twisted and Autobahn",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=["txchat", "txchat.web", "twisted.plugins"],
    package_dir={"txchat.web": "web"},
    package_data={"txchat": ["py.typed"], "txchat.web": ["home.html"], "twisted.plugins": ["txchat_plugin.py"]},
    # Capped below the next releases (tested: Twisted 26.10, Autobahn 26.10): txchat relies on
    # private parts of both, each fenced and tested by name. Autobahn (autobahn_internals.py):
    # _batched_timer, CONFIG_ATTRS, _dataReceived, _fail_connection, closeHandshakeTimeoutCall,
    # the sendData/sendCloseFrame/dropConnection overrides, state, http_request_uri,
    # PreparedMessage.payloadHybi. Twisted (twisted_internals.py): a tcp.Connection's socket
    # send and its pull-producer resumes, hand-over of a live transport (protocol,
    # wrappedProtocol), HTTPChannel's totalHeadersSize/MAX_LENGTH, allHeadersReceived and
    # requestDone, Request's gotLength/handleContentChunk/requestReceived, and what
    # combinedLogFormatter reads from a request.
    install_requires=[
        "twisted[tls]>=24.7,<26.11",
        "autobahn>=24.4,<26.11",
        # Autobahn's logging framework: txchat sets its level (txchat/logtext.py).
        "txaio>=23.1,<27",
        "hiredis>=2.1,<4",
        "prometheus_client>=0.17,<1",
        "PyJWT[crypto]>=2.8,<3",
        # A cluster's chat log in PostgreSQL (txchat/pglog.py); the binary wheel brings its own libpq.
        "psycopg[binary]>=3.1,<4",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "selenium>=4.20",
            "selenium-axe-python>=2.2,<3",
            "websockets>=13",
            "picows>=1.0",
            "hypothesis>=6",
            "mypy>=1.10",
            "mypy-zope>=1.0",
        ],
    },
    zip_safe=False,
)
