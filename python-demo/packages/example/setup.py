from setuptools import Extension, setup

setup(ext_modules=[Extension("wasix_example._native", ["src/wasix_example/_native.c"])])
