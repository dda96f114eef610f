// Coffer's upload page, improved: a progress bar while the files are sent (and a button to
// cancel them), and dropping files anywhere on the form. Without this script the form posts as
// usual and all else works.
(function () {
  'use strict';
  var form = document.getElementById('upload-form');
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var input = document.getElementById('file');
  var zone = document.getElementById('dropzone');
  var hint = document.getElementById('file-hint');
  var box = document.getElementById('progress-box');
  var bar = document.getElementById('progress');
  var text = document.getElementById('progress-text');
  var error = document.getElementById('upload-error');
  var button = document.getElementById('upload-button');
  var cancel = document.getElementById('cancel-upload');
  var sending = null; // the upload under way

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
    box.hidden = true;
    button.disabled = false;
  }

  function setProgress(percent) {
    bar.value = percent;
    bar.textContent = percent + ' %';
    text.textContent = percent + ' %';
  }

  function chosen() {
    var files = input.files;
    if (!files || files.length === 0) return;
    var names = Array.prototype.map.call(files, function (file) { return file.name; });
    hint.textContent = files.length === 1
      ? 'Chosen: ' + names[0]
      : 'Chosen: ' + files.length + ' files (' + names.join(', ') + ')';
  }

  input.addEventListener('change', chosen);
  cancel.addEventListener('click', function () {
    if (sending) sending.abort();
  });
  ['dragenter', 'dragover'].forEach(function (type) {
    form.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add('dragging');
    });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    form.addEventListener(type, function () {
      zone.classList.remove('dragging');
    });
  });
  form.addEventListener('drop', function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length > 0) {
      input.files = files;
      chosen();
    }
  });

  form.addEventListener('submit', function (event) {
    if (!input.files || input.files.length === 0) return; // the browser says what is missing
    event.preventDefault();
    // The same form data the browser would send, the CSRF token first.
    var data = new FormData(form);
    var xhr = new XMLHttpRequest();
    xhr.open('POST', form.action);
    xhr.upload.addEventListener('progress', function (e) {
      if (e.lengthComputable && e.total > 0) {
        setProgress(Math.min(100, Math.floor((e.loaded * 100) / e.total)));
      }
    });
    xhr.upload.addEventListener('load', function () {
      setProgress(100);
      text.textContent = input.files.length === 1
        ? '100 %: checking the file…'
        : '100 %: checking the files…';
    });
    xhr.addEventListener('load', function () {
      if (xhr.status >= 200 && xhr.status < 300 && xhr.responseURL) {
        // The file's page (or the files list, for several), after the server's 303.
        window.location.assign(xhr.responseURL);
        return;
      }
      // The server's page says what went wrong; show its message here, keeping the form.
      var page = new DOMParser().parseFromString(xhr.responseText, 'text/html');
      var alert = page.querySelector('[role=alert]');
      var message = alert && alert.textContent.trim();
      showError(message || 'The upload failed (' + xhr.status + '). Try again.');
    });
    xhr.addEventListener('error', function () {
      showError('The upload was interrupted. Check the connection and try again.');
    });
    // The server drops what it received of an upload that breaks off.
    xhr.addEventListener('abort', function () {
      showError('Upload cancelled: nothing was kept. Choose Upload to send it again.');
    });
    xhr.addEventListener('loadend', function () {
      sending = null;
    });
    sending = xhr;
    error.hidden = true;
    box.hidden = false;
    button.disabled = true;
    setProgress(0);
    xhr.send(data);
  });
})();
