"use strict";
// Plays interleaved stereo float samples posted by listen.js; counts what it received.
class ListenPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];
    this.at = 0;
    this.received = 0;
    this.port.onmessage = (event) => {
      this.received += 1;
      this.chunks.push(event.data);
      if (this.chunks.length > 50) { this.chunks.shift(); this.at = 0; } // over a second behind
      this.port.postMessage({ received: this.received });
    };
  }

  process(inputs, outputs) {
    const [left, right] = outputs[0];
    for (let i = 0; i < left.length; i++) {
      const head = this.chunks[0];
      if (!head) { left[i] = 0; if (right) right[i] = 0; continue; }
      left[i] = head[this.at];
      if (right) right[i] = head[this.at + 1];
      this.at += 2;
      if (this.at >= head.length) { this.chunks.shift(); this.at = 0; }
    }
    return true;
  }
}
registerProcessor("listen-player", ListenPlayer);
