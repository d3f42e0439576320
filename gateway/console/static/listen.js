"use strict";
// Listen-in: the call's two sides as stereo PCM16 over a WebSocket, played with WebAudio
// (an AudioWorklet; a ScriptProcessor where there is none). Counts what it received:
// ListenIn.stats.frames (messages on the socket), ListenIn.stats.workletFrames (blocks the
// player took, as it reports them).
const ListenIn = (() => {
  const stats = { frames: 0, bytes: 0, workletFrames: 0, mode: "" };
  let socket = null, context = null, node = null, queue = [];

  function toFloat(buffer) {
    const pcm = new Int16Array(buffer);
    const out = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
    return out;
  }

  async function player(rate) {
    context = new AudioContext({ sampleRate: rate });
    if (context.audioWorklet) {
      await context.audioWorklet.addModule("/console/static/listen-worklet.js");
      node = new AudioWorkletNode(context, "listen-player", { outputChannelCount: [2] });
      node.port.onmessage = (event) => { stats.workletFrames = event.data.received; };
      node.connect(context.destination);
      stats.mode = "worklet";
      return (samples) => node.port.postMessage(samples, [samples.buffer]);
    }
    // Fallback: a ScriptProcessor pulls from a queue of interleaved samples.
    node = context.createScriptProcessor(2048, 0, 2);
    node.onaudioprocess = (event) => {
      const left = event.outputBuffer.getChannelData(0), right = event.outputBuffer.getChannelData(1);
      for (let i = 0; i < left.length; i++) {
        const head = queue[0];
        if (!head) { left[i] = right[i] = 0; continue; }
        left[i] = head.data[head.at]; right[i] = head.data[head.at + 1];
        head.at += 2;
        if (head.at >= head.data.length) queue.shift();
      }
    };
    node.connect(context.destination);
    stats.mode = "script-processor";
    return (samples) => { queue.push({ data: samples, at: 0 }); stats.workletFrames += 1; if (queue.length > 50) queue.shift(); };
  }

  function start(path, status) {
    return new Promise((resolve) => {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(`${scheme}//${location.host}${path}`);
      socket.binaryType = "arraybuffer";
      let play = null;
      socket.onmessage = async (event) => {
        if (typeof event.data === "string") {
          const format = JSON.parse(event.data);
          play = await player(format.rate);
          await context.resume();
          status.textContent = `Listening (${format.rate} Hz, caller left, agent right)`;
          resolve();
          return;
        }
        stats.frames += 1;
        stats.bytes += event.data.byteLength;
        if (play) play(toFloat(event.data));
      };
      socket.onclose = () => { status.textContent = "Not listening"; cleanup(); resolve(); };
      socket.onerror = () => { status.textContent = "Listen-in failed"; };
    });
  }

  function cleanup() {
    if (node) { node.disconnect(); node = null; }
    if (context) { context.close(); context = null; }
    socket = null;
    queue = [];
  }

  function stop() {
    if (socket) socket.close();
    cleanup();
  }

  return { start, stop, stats, active: () => socket !== null };
})();
window.ListenIn = ListenIn;
