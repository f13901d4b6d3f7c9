// The desk's only script, served from the hub itself (the pages' Content
// Security Policy allows no inline script). It reads no record data from
// the page except the referral number in a data- attribute, and writes
// text with textContent only.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page === 'list') {
    // Live refresh: when events arrive, fetch the same (server-rendered,
    // escaped) page and swap its table and late count in.
    const es = new EventSource('/desk/api/stream');
    es.onmessage = () => fetch(location.pathname + location.search, {credentials: 'same-origin'})
      .then(r => r.text()).then(t => {
        const doc = new DOMParser().parseFromString(t, 'text/html');
        const table = doc.getElementById('table');
        const late = doc.getElementById('late-count');
        if (table) document.getElementById('table').replaceWith(document.importNode(table, true));
        if (late) document.getElementById('late-count').textContent = late.textContent;
      });
  }
  if (page === 'detail') {
    const form = document.getElementById('action-form');
    if (form) {
      form.addEventListener('submit', ev => {
        ev.preventDefault();
        const no = form.dataset.referral;
        fetch('/desk/api/referrals/' + encodeURIComponent(no) + '/actions', {
          method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({action: document.getElementById('action').value, text: document.getElementById('text').value}),
        }).then(r => {
          document.getElementById('action-result').textContent = r.ok ? '已提交，正在写入时间线…' : '提交失败';
        });
      });
    }
    const es = new EventSource('/desk/api/stream');
    es.onmessage = () => location.reload();
  }
  if (page === 'blacklist-case') {
    const form = document.getElementById('list-action-form');
    if (form) {
      form.addEventListener('submit', ev => {
        ev.preventDefault();
        const result = document.getElementById('list-action-result');
        fetch('/desk/api/blacklist/' + encodeURIComponent(form.dataset.case) + '/actions', {
          method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({
            action: document.getElementById('list-action').value,
            date: document.getElementById('list-date').value,
            text: document.getElementById('list-text').value,
          }),
        }).then(r => r.json().then(body => {
          if (r.ok) {
            result.textContent = '已登记';
            location.reload();
          } else {
            result.textContent = '未登记：' + (body.message || r.status);
          }
        }));
      });
    }
  }
  if (page === 'credit') {
    document.querySelectorAll('form.class-form').forEach(form => form.addEventListener('submit', ev => {
      ev.preventDefault();
      const result = form.querySelector('.class-result');
      fetch('/desk/api/credit/' + encodeURIComponent(form.dataset.id) + '/class', {
        method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({
          severity: form.querySelector('.class-severity').value,
          reason: form.querySelector('.class-reason').value,
        }),
      }).then(r => r.json().then(body => {
        if (r.ok) {
          result.textContent = '已定级';
          location.reload();
        } else {
          result.textContent = '未定级：' + (body.message || r.status);
        }
      }));
    }));
  }
  if (page === 'entity-proposals') {
    const result = document.getElementById('link-result');
    document.querySelectorAll('button.link-action').forEach(b => b.addEventListener('click', () => {
      fetch('/desk/api/entities/links', {
        method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({reference: b.dataset.reference, entity: b.dataset.entity, action: b.dataset.action}),
      }).then(r => r.json().then(body => {
        if (r.ok) {
          result.textContent = '已登记';
          location.reload();
        } else {
          result.textContent = '未登记：' + (body.message || r.status);
        }
      }));
    }));
  }
});
