
import torch

from causal_interp import config, data, models, training


def small_cfg(**kw):
    base = dict(dataset="mnist", model="lenet", image_size=32, epochs=2, batch_size=32, lr=3e-3, threads=1)
    return config.from_dict(config.TrainConfig, {**base, **kw}, "t")


def test_augment_shapes_identity_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    assert torch.equal(training.augment(x, 0, False, gen), x)
    y = training.augment(x, 2, True, gen)
    assert y.shape == x.shape and y.dtype == x.dtype
    # every crop is a shifted window of the reflect-padded image, possibly flipped
    xp = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [xp[i, :, r:r + 4, c:c + 4] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[i].float(), w) or torch.equal(y[i].float(), w.flip(-1)) for w in windows)


def test_classification_metrics_by_hand():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0], [0, 0, 2.0]])
    y = torch.tensor([0, 1, 1, 2])
    m = training.classification_metrics(logits, y, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_training_learns_the_fake_task(fake_data):
    ds = data.load_dataset("mnist", fake_data, image_size=32)
    cfg = small_cfg(epochs=4)
    torch.manual_seed(0)
    net = models.build_model("lenet", 10, in_chans=1)
    before = training.classification_metrics(training.predict(net, ds, ds.x_test), ds.y_test, ds.classes)
    hist = training.train(net, ds, cfg, log=lambda *_: None)["history"]
    after = training.classification_metrics(training.predict(net, ds, ds.x_test), ds.y_test, ds.classes)
    assert len(hist) == 4 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert after["accuracy"] > max(0.5, before["accuracy"])


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, fake_data):
    ds = data.load_dataset("cifar10", fake_data)
    cfg = small_cfg(dataset="cifar10", optimizer="sgd", lr=0.05, epochs=2, crop_pad=2, hflip=True)
    quiet = lambda *_: None  # noqa: E731

    torch.manual_seed(0)
    full = models.build_model("lenet", 10, in_chans=3)
    training.train(full, ds, cfg, log=quiet)

    torch.manual_seed(0)
    interrupted = models.build_model("lenet", 10, in_chans=3)
    ckpt = tmp_path / "c2.pt"

    class Stop(Exception):
        pass

    def stop_after_first_epoch(msg):  # interrupted at the end of epoch 2, before its checkpoint
        if msg.startswith("epoch 2/"):
            raise Stop

    try:
        training.train(interrupted, ds, cfg, checkpoint=ckpt, log=stop_after_first_epoch)
    except Stop:
        pass
    assert ckpt.exists()
    torch.manual_seed(123)  # a different global state must not matter
    resumed = models.build_model("lenet", 10, in_chans=3)
    logs = []
    hist = training.train(resumed, ds, cfg, checkpoint=ckpt, log=logs.append)["history"]
    assert logs[0].startswith("resumed") and len(hist) == 2
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
