from setuptools import setup

setup(
    name="txchat",
    version="0.1.0",
    description="A real-time web chat server on Twisted and Autobahn",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=["txchat", "txchat.web", "twisted.plugins"],
    package_dir={"txchat.web": "web"},
    package_data={"txchat.web": ["home.html"], "twisted.plugins": ["txchat_plugin.py"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "autobahn>=24.4",
        "prometheus_client>=0.17",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "selenium>=4.20",
            "websockets>=13",
            "picows>=1.0",
            "hypothesis>=6",
        ],
    },
    zip_safe=False,
)
