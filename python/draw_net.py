#!/usr/bin/env python3
"""Caffe's draw_net.py: draws a net prototxt as a graph (needs pydot and Graphviz).

    python python/draw_net.py models/lenet10_dropin/train_val.prototxt lenet.png --rankdir TB --phase TRAIN
"""
from caffe.draw import main

if __name__ == "__main__":
    main()
